#pragma once

// TransactionDriver::Context: what a processor may do while driving one transaction
// (DriveContext), as the driver gives it: calls and deliveries under a lease known to run for
// their whole budget, every write fenced on that lease, outcomes recorded with the next fenced
// write. One per drive, on the drive's thread. Internal to the driver: included by
// transaction_driver.cc and drive_context_impl.cc only.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "coordinator/core/transaction_driver.h"

namespace treaty::core {

class TransactionDriver::Context : public DriveContext {
 public:
  // `lease_known_until`: until when, by this coordinator's monotonic clock, the lease taken for
  // this drive is known to run (it was taken before that time minus the lease).
  Context(TransactionDriver& d, MonoTime lease_known_until)
      : d_(d), fence_{d.options_.owner, d.options_.lease}, lease_known_until_(lease_known_until) {}

  TimePoint Now() override { return d_.clock_.Now(); }

  Status CallOps(Transaction& tx, const std::vector<size_t>& indexes,
                 const CallOptions& options) override;
  Duration Backoff(int attempts, const std::optional<OpRetry>& retry) override;

  Status PublishOps(Transaction& tx, const std::vector<size_t>& indexes,
                    std::vector<OutboundMessage> messages) override;

  Status Transition(Transaction& tx, TxStatus to, const std::string& reason) override;

  Status SetAttention(Transaction& tx, const std::string& attention) override;

  Status RetryLater(Transaction& tx, int attempts, std::optional<TimePoint> not_after) override;

  Status WakeAt(Transaction& tx, TimePoint at) override;

  // Records the outcomes of calls not yet recorded (the drive ends without a transition), under
  // the fence.
  Status Flush(const std::string& gid);

 private:
  // Before a round of calls: what earlier rounds left unrecorded is made durable, and the lease
  // is confirmed (renewed by a fenced write) unless a fenced write renewed it moments ago and it
  // still has `budget` and a margin left. A failed fence stops the drive here, before any call.
  Status StartRound(const std::string& gid, Duration budget);

  // A fenced write sent at `sent` succeeded: the store extended the lease from a moment after.
  void Renewed(MonoTime sent) { lease_known_until_ = sent + d_.options_.lease; }

  // The time left on the lease, less a margin for the clocks' rates, never negative.
  Duration LeaseLeft();

  // Calls' outcomes are applied to tx at once and made durable with the next transition, or by
  // Flush before the next round of calls or a wait: a crash in between only loses attempts, which
  // are repeated (participants take any op more than once), never a decision. A round followed
  // by a decision (2PC, TCC, msg) costs no write of its own.
  void Unrecorded(Transaction& tx, const std::vector<size_t>& indexes,
                  std::vector<BranchOp>& updated);

  std::vector<BranchOp> UnrecordedOps() const;

  TransactionDriver& d_;
  const Fence fence_;
  MonoTime lease_known_until_;
  std::map<std::pair<std::string, std::string>, BranchOp> unrecorded_;  // by (branch, op)
};

}  // namespace treaty::core
