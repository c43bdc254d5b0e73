#pragma once

// One processor per transaction mode, all behind this interface. A processor is pure
// orchestration: it reads the transaction, asks the DriveContext to call branches and to make
// state changes durable, and never touches a store or a socket itself. New requests and recovery
// take the same path: whatever is stored is driven on from where it stands.

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/begin_request.h"
#include "coordinator/core/message_sink.h"
#include "coordinator/core/transaction.h"

namespace treaty::core {

// What a processor may do while driving one transaction. Implemented by TransactionDriver.
class DriveContext {
 public:
  virtual ~DriveContext() = default;

  virtual TimePoint Now() = 0;

  struct CallOptions {
    // No call runs past it (an answer due later is no answer).
    std::optional<TimePoint> not_after;
    // When not empty, payloads[k] is sent to the op at indexes[k] instead of its stored payload
    // (a saga step's payload built from earlier steps' outputs).
    std::vector<std::string> payloads;
    // Keep each 2xx answer that is JSON (at most kMaxOutputBytes) as the op's output_json.
    bool keep_outputs = false;
  };

  // Calls the ops at `indexes` in parallel, counts the attempt, and records each outcome
  // (succeeded / refused / still pending with the error) durably before updating tx.ops.
  virtual Status CallOps(Transaction& tx, const std::vector<size_t>& indexes,
                         const CallOptions& options) = 0;
  Status CallOps(Transaction& tx, const std::vector<size_t>& indexes) {
    return CallOps(tx, indexes, CallOptions{});
  }

  // The delay before retrying an op after `attempts` attempts: treaty.yaml's retry policy, with
  // what `retry` (the op's own policy, when given) sets instead; without jitter, so that every
  // drive computes the same due time for the same op.
  virtual Duration Backoff(int attempts, const std::optional<OpRetry>& retry) = 0;

  // Makes tx.status -> `to` durable (with a decision-log row) iff the store still has tx.status;
  // then updates tx. Conflict when another actor moved the transaction first.
  virtual Status Transition(Transaction& tx, TxStatus to, const std::string& reason) = 0;

  // Delivers `messages` through the message sink, messages[k] being the op at indexes[k], and
  // records each op as succeeded (acknowledged) or pending with the error, like CallOps.
  virtual Status PublishOps(Transaction& tx, const std::vector<size_t>& indexes,
                            std::vector<OutboundMessage> messages) = 0;

  // Sets or (with "") clears the attention flag, when it changes.
  virtual Status SetAttention(Transaction& tx, const std::string& attention) = 0;

  // Schedules the next attempt after the backoff for `attempts` attempts made, but not after
  // `not_after` when given.
  virtual Status RetryLater(Transaction& tx, int attempts, std::optional<TimePoint> not_after) = 0;

  // Schedules the next look at the transaction for `at`, with no backoff.
  virtual Status WakeAt(Transaction& tx, TimePoint at) = 0;
};

// What the service plans a new transaction with when the request leaves it open.
struct PlanDefaults {
  Duration timeout{std::chrono::seconds(10)};    // the first phase's deadline
  Duration check_back{std::chrono::seconds(5)};  // msg: a half message's wait for its service
};

// What a client's submit does to a begun transaction (Processor::OnSubmit).
struct SubmitStep {
  enum class Kind {
    kNone,           // nothing: it was submitted before, or is decided; answer it as it stands
    kRefuse,         // Conflict, saying `why`
    kMarkSubmitted,  // its branches are complete: mark it submitted; the first phase starts
    kDecide,         // the submit is the decision: move it to `to`, saying `why`
  };
  Kind kind = Kind::kNone;
  TxStatus to = TxStatus::kActive;
  std::string why;
};

class Processor {
 public:
  virtual ~Processor() = default;

  virtual Mode mode() const = 0;

  // The fields of a begin request beyond those of every mode (gid, mode, wait, timeout,
  // branches) that this mode reads, by their JSON names ("sequential", "query", "messages",
  // "check_back"). Plan() refuses the others; transports use the list to say which mode a
  // field belongs to.
  virtual const std::vector<std::string>& RequestFields() const;

  // Whether a branch may name the branches that must succeed before it runs ("after").
  virtual bool OrdersBranches() const { return false; }

  // Whether a branch may carry its own retry policy and per-op settings (BranchSpec::retry,
  // op_settings).
  virtual bool TakesOpPolicies() const { return false; }

  // Whether an operator may force `tx` to `to` (committed or aborted) now, without the calls
  // still due: Conflict, saying why, where that could contradict what was decided or done. The
  // default: an unfinished transaction may be forced aborted until commit is decided, and
  // committed once it is (committing).
  virtual Status CanForce(const Transaction& tx, TxStatus to) const;

  // The ops a transaction of this mode calls while in `status` (for a force-finish's account of
  // what will not be called). The default, for modes whose branches have a first-phase op then
  // a commit op then an abort op: the first while active or prepared, the second while
  // committing, the last while aborting.
  virtual std::vector<std::string> OpsDueIn(TxStatus status) const;

  // Turns a begin request into the transaction to store. `tx` comes with its gid, mode,
  // created_at, updated_at, definition and request fields set; Plan sets status, submitted,
  // sequential, deadline, next_attempt_at and ops. InvalidArgument (naming the field where
  // there is one) when the request does not make a transaction of this mode. The default: the
  // request's branches (CheckBranch), submitted at once when given whole, else begun and open
  // for registration until the deadline.
  virtual Status Plan(const BeginRequest& request, const PlanDefaults& defaults,
                      Transaction& tx) const;

  // What a client's submit does to `tx` as stored. The default: an active transaction not yet
  // submitted is marked submitted (refused while it has no branch); aborting or aborted ones
  // are refused; anything else is left as it is.
  virtual SubmitStep OnSubmit(const Transaction& tx) const;

  // Checks `branch` against this mode (its id; its ops known to the mode, the `required` ones
  // present; `after` only where OrdersBranches) and appends its ops, at `position`, to `ops`.
  // `registered`: it joins a begun transaction (RequiredOps(true)).
  Status CheckBranch(const BranchSpec& branch, int position, bool registered,
                     std::vector<BranchOp>* ops) const;

  // The ops a branch of this mode may name a URL for, e.g. prepare, commit, abort.
  virtual const std::vector<std::string>& BranchOps() const = 0;

  // The ops a branch must name: submitted whole, or registered on a begun transaction (TCC:
  // the client ran the try itself).
  virtual const std::vector<std::string>& RequiredOps(bool registered) const = 0;

  // Advances `tx` as far as it can now. OK: it is final, or it waits (RetryLater or WakeAt was
  // called). Any other status means stop here: the stored transaction is driven again later
  // (Conflict: someone else changed it; reload and drive again).
  virtual Status Drive(Transaction& tx, DriveContext& ctx) = 0;

  // Whether an abort asked by someone other than the transaction's own client must first learn
  // the outcome from it (msg: a half message whose service may have committed). False by
  // default: the abort goes ahead.
  virtual bool ChecksBeforeAbort(const Transaction&) const { return false; }

  // The check that ChecksBeforeAbort asks for, made now: moves `tx` as the answer says and
  // drives it on. OK when it ends aborting or aborted; Conflict (saying why) when the answer was
  // to commit, or when no answer came (then nothing is recorded).
  virtual Status CheckBackNow(Transaction& tx, DriveContext& ctx) {
    (void)tx;
    (void)ctx;
    return Status::Ok();
  }

 protected:
  // InvalidArgument naming the first field of `request` that this mode does not read
  // (RequestFields).
  Status RefuseUnreadFields(const BeginRequest& request) const;
  // The default Plan's branches: each checked (CheckBranch, ids unique) and its ops appended.
  Status PlanBranches(const std::vector<BranchSpec>& branches, Transaction& tx) const;
};

}  // namespace treaty::core
