#pragma once

// The durable store of transactions, as the core needs it. Implemented over PostgreSQL
// (coordinator/store/pg_transaction_store.h) and in memory for unit tests. Every method is
// thread-safe and atomic: it either happens whole, with its decision-log row, or not at all.
// Failures: Unavailable when the store cannot be reached (the caller retries), NotFound for an
// unknown gid, Conflict when the stored state no longer matches what the call expects.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/transaction.h"

namespace treaty::core {

// A drive's hold on a transaction. Every write a drive makes carries it: the write happens only
// while `owner` holds an unexpired lease on the transaction by the store's own clock (for
// PostgreSQL, the database's: no coordinator's clock is ever compared with another's), and it
// extends the lease to the store's now + `lease`. A write whose fence fails changes nothing and
// returns LeaseLost: another coordinator may be driving the transaction, and this drive must stop
// at once (docs/recovery.md).
struct Fence {
  std::string owner;
  Duration lease{};
};

struct CreateResult {
  bool created = false;  // false: the gid existed; `existing` holds it
  Transaction existing;
};

struct ListFilter {
  std::optional<TxStatus> status;
  std::optional<Mode> mode;
  std::string after_gid;  // page after this gid (gids in ascending order)
  int limit = 50;
  // Created at or after `created_since`, and before `created_before` (the console's age filter).
  std::optional<TimePoint> created_since;
  std::optional<TimePoint> created_before;
  // Only stuck transactions as of this time: unfinished, and either flagged for attention or past
  // their deadline.
  std::optional<TimePoint> stuck_at;
};

// What a read spanning the whole store found. A store made of parts (store.shards) answers from
// the parts it reached and names the others in `unreachable_shards` (empty for a single store,
// which answers whole or fails).
struct ListPage {
  std::vector<Transaction> transactions;  // in gid order
  std::vector<int> unreachable_shards;
};
struct StatusCounts {
  std::map<TxStatus, int64_t> by_status;  // statuses with none left out
  std::vector<int> unreachable_shards;
};

class TransactionStore {
 public:
  virtual ~TransactionStore() = default;

  // Inserts `tx` (status, ops, times as given) and its first log row, leased to `owner` for
  // `lease` from the store's now, so that the creator drives it first (zero: any coordinator may
  // claim it when it falls due). When the gid exists, changes nothing and returns the stored
  // transaction instead.
  virtual Result<CreateResult> Create(const Transaction& tx, const std::string& owner,
                                      Duration lease) = 0;

  // The transaction with its ops; with its decision log when `with_log`.
  virtual Result<Transaction> Load(const std::string& gid, bool with_log) = 0;

  // Adds one branch's ops while the transaction is active and not yet submitted; Conflict
  // otherwise, or when the branch id is taken.
  virtual Status AddBranch(const std::string& gid, const std::vector<BranchOp>& ops) = 0;

  // Marks an active transaction submitted (and due now); Conflict if it is not active or was
  // submitted already.
  virtual Status MarkSubmitted(const std::string& gid, TimePoint now) = 0;

  // Moves the transaction from `from` to `to`, with a log row, iff its status is still `from`
  // and the move is legal for its mode (state_machine.h); Conflict otherwise. `reason` is kept
  // as the transaction's reason. `ops` (often empty) are recorded as by RecordOps in the same
  // atomic step, and only with the move; NotFound (and no move) when one of them does not exist.
  // A drive records the calls that led to a decision with the decision: one durable write.
  // A drive passes its `fence` (LeaseLost, and no move, when it fails; checked before the
  // status); a client's move (abort, a message's submit) passes none.
  // Op states merge monotonically: a stored succeeded op stays succeeded, and a refused one
  // never goes back to pending (a stale or repeated write cannot undo an outcome).
  virtual Status Transition(const std::string& gid, TxStatus from, TxStatus to,
                            const std::string& reason, TimePoint now,
                            const std::vector<BranchOp>& ops, const Fence* fence) = 0;

  // Stores the status, attempts and last error of these ops (merged as by Transition) under
  // the drive's `fence`; with no ops, only renews the lease. LeaseLost when the fence fails.
  virtual Status RecordOps(const std::string& gid, const std::vector<BranchOp>& ops, TimePoint now,
                           const Fence& fence) = 0;

  // Sets (non-empty) or clears (empty) the attention flag; under `fence` when given (LeaseLost
  // when it fails).
  virtual Status SetAttention(const std::string& gid, const std::string& attention,
                              const Fence* fence) = 0;

  // Sets when the transaction is next due and gives up `owner`'s lease on it; does nothing when
  // `owner` no longer holds it. If a client made it due meanwhile (MarkSubmitted, MakeDue), it
  // stays due now: that wake-up is not lost.
  virtual Status Reschedule(const std::string& gid, const std::string& owner,
                            TimePoint next_attempt_at) = 0;

  // Makes an unfinished transaction due at `now` (skipping its backoff), also for whoever holds
  // its lease (see Reschedule); leases are untouched.
  virtual Status MakeDue(const std::string& gid, TimePoint now) = 0;

  // An operator's end of a transaction (force-finish): moves it from `from` to `to` (final)
  // iff its status is still `from`, whatever the mode's state machine allows, with a log row
  // naming `actor` and `reason` (also kept as the transaction's reason). Clears its attention
  // flag, its lease and any wake-up: no coordinator drives it again, and a drive still running
  // fails its fence at its next write. Conflict when it is no longer `from`.
  virtual Status Force(const std::string& gid, TxStatus from, TxStatus to,
                       const std::string& reason, const std::string& actor, TimePoint now) = 0;

  // Leases up to `limit` unfinished transactions that are due at `now` and not leased by a live
  // owner, to `owner` for `lease`. Leases are taken and compared by the store's clock; `now`
  // only says what is due (due times are set from coordinators' clocks: a skewed one makes a
  // retry early or late, never two drivers at once). Several coordinators may call this at
  // once: each transaction goes to one of them.
  virtual Result<std::vector<std::string>> ClaimDue(const std::string& owner, TimePoint now,
                                                    Duration lease, int limit) = 0;

  // Leases one unfinished transaction to `owner` for `lease` (store clock) unless another
  // owner's lease on it is still running; false when someone else holds it.
  virtual Result<bool> TryLease(const std::string& gid, const std::string& owner,
                                Duration lease) = 0;

  // Gives up every lease held by `node` or by any run of it (owners "`node`#..."): a restarted
  // coordinator frees its predecessors' leases.
  virtual Status ReleaseLeases(const std::string& node) = 0;

  // Transactions matching `filter`, ops and log left empty, in gid order.
  virtual Result<ListPage> List(const ListFilter& filter) = 0;

  // How many transactions the store holds in each status.
  virtual Result<StatusCounts> CountByStatus() = 0;
};

}  // namespace treaty::core
