#pragma once

// A TransactionStore in memory, for unit tests of the core. Enforces the same contract as the
// PostgreSQL store, the state machine tables included. Thread-safe.

#include <map>
#include <mutex>

#include "common/thread_annotations.h"
#include "coordinator/core/environment.h"
#include "coordinator/core/store.h"

namespace treaty::core::testing {

class InMemoryStore : public TransactionStore {
 public:
  // `clock` is the store's own clock (the database's, for PostgreSQL): leases are taken and
  // fenced by it. It must outlive the store; the system clock when null.
  explicit InMemoryStore(Clock* clock = nullptr) : clock_(clock ? clock : &SystemClock()) {}

  Result<CreateResult> Create(const Transaction& tx, const std::string& owner,
                              Duration lease) override;
  Result<Transaction> Load(const std::string& gid, bool with_log) override;
  Status AddBranch(const std::string& gid, const std::vector<BranchOp>& ops) override;
  Status MarkSubmitted(const std::string& gid, TimePoint now) override;
  Status Transition(const std::string& gid, TxStatus from, TxStatus to, const std::string& reason,
                    TimePoint now, const std::vector<BranchOp>& ops, const Fence* fence) override;
  Status RecordOps(const std::string& gid, const std::vector<BranchOp>& ops, TimePoint now,
                   const Fence& fence) override;
  Status SetAttention(const std::string& gid, const std::string& attention,
                      const Fence* fence) override;
  Status Reschedule(const std::string& gid, const std::string& owner,
                    TimePoint next_attempt_at) override;
  Status MakeDue(const std::string& gid, TimePoint now) override;
  Status Force(const std::string& gid, TxStatus from, TxStatus to, const std::string& reason,
               const std::string& actor, TimePoint now) override;
  Result<std::vector<std::string>> ClaimDue(const std::string& owner, TimePoint now, Duration lease,
                                            int limit) override;
  Result<bool> TryLease(const std::string& gid, const std::string& owner, Duration lease) override;
  Status ReleaseLeases(const std::string& node) override;
  Result<ListPage> List(const ListFilter& filter) override;
  Result<StatusCounts> CountByStatus() override;

  // Test controls: while unavailable, every call fails with Unavailable.
  void SetUnavailable(bool unavailable);
  std::string LeaseOwner(const std::string& gid);
  // When the lease on `gid` ends, by the store's clock (the epoch when none was ever taken).
  TimePoint LeaseUntil(const std::string& gid);
  // Ends every lease now, as if each had run out (another coordinator may then claim them).
  void ExpireLeases();
  // How many times `method` ("Load", "RecordOps", ...) was called.
  int Calls(const std::string& method) const;

 private:
  struct Row {
    Transaction tx;
    std::string owner;
    TimePoint lease_until{};
    bool wake_requested = false;
  };
  Status CheckUp(const char* method) const REQUIRES(mu_);  // counts the call
  // Checks `fence` on `row` and renews its lease; LeaseLost when it fails.
  Status Fenced(Row& row, const Fence& fence) REQUIRES(mu_);

  Clock* const clock_;
  mutable Mutex mu_;
  std::map<std::string, Row> rows_ GUARDED_BY(mu_);
  bool unavailable_ GUARDED_BY(mu_) = false;
  mutable std::map<std::string, int> calls_ GUARDED_BY(mu_);
};

}  // namespace treaty::core::testing
