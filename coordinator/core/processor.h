#pragma once

// One processor per transaction mode, all behind this interface. A processor is pure
// orchestration: it reads the transaction, asks the DriveContext to call branches and to make
// state changes durable, and never touches a store or a socket itself. New requests and recovery
// take the same path: whatever is stored is driven on from where it stands.

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/transaction.h"

namespace treaty::core {

// What a processor may do while driving one transaction. Implemented by TransactionDriver.
class DriveContext {
 public:
  virtual ~DriveContext() = default;

  virtual TimePoint Now() = 0;

  // Calls the ops at `indexes` in parallel, counts the attempt, and records each outcome
  // (succeeded / refused / still pending with the error) durably before updating tx.ops. With
  // `not_after`, no call runs past it (an answer due later is no answer).
  virtual Status CallOps(Transaction& tx, const std::vector<size_t>& indexes,
                         std::optional<TimePoint> not_after = std::nullopt) = 0;

  // Makes tx.status -> `to` durable (with a decision-log row) iff the store still has tx.status;
  // then updates tx. Conflict when another actor moved the transaction first.
  virtual Status Transition(Transaction& tx, TxStatus to, const std::string& reason) = 0;

  // Delivers the "publish" ops at `indexes` (messages: payload {"topic","key","value",
  // "headers"}) through the message sink, and records each as succeeded (acknowledged) or
  // pending with the error, like CallOps.
  virtual Status PublishOps(Transaction& tx, const std::vector<size_t>& indexes) = 0;

  // Sets or (with "") clears the attention flag, when it changes.
  virtual Status SetAttention(Transaction& tx, const std::string& attention) = 0;

  // Schedules the next attempt after the backoff for `attempts` attempts made, but not after
  // `not_after` when given.
  virtual Status RetryLater(Transaction& tx, int attempts, std::optional<TimePoint> not_after) = 0;

  // Schedules the next look at the transaction for `at`, with no backoff.
  virtual Status WakeAt(Transaction& tx, TimePoint at) = 0;
};

class Processor {
 public:
  virtual ~Processor() = default;

  virtual Mode mode() const = 0;

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
};

}  // namespace treaty::core
