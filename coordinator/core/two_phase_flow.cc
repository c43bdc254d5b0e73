#include "coordinator/core/two_phase_flow.h"

#include <algorithm>

namespace treaty::core {
namespace {

// Phase two never gives up; after this many attempts a person should know.
constexpr int kAttentionAfterAttempts = 5;

int MaxAttempts(const Transaction& tx, const std::vector<size_t>& idx) {
  int m = 0;
  for (size_t i : idx) m = std::max(m, tx.ops[i].attempts);
  return m;
}

std::string Describe(const BranchOp& op) {
  return "branch " + op.branch_id + " " +
         (op.status == OpStatus::kRefused ? "refused " + op.op : op.op + " unanswered") +
         (op.last_error.empty() ? "" : ": " + op.last_error);
}

Status DriveFirstPhase(Transaction& tx, DriveContext& ctx, const TwoPhaseOps& ops, bool* waiting) {
  TimePoint now = ctx.Now();
  if (!tx.submitted) {
    if (now >= tx.deadline) {
      return ctx.Transition(tx, TxStatus::kAborting, "not submitted before its deadline");
    }
    *waiting = true;
    return ctx.WakeAt(tx, tx.deadline);
  }
  std::vector<size_t> firsts = tx.OpsNamed(ops.first);
  std::vector<size_t> pending;
  for (size_t i : firsts) {
    const BranchOp& op = tx.ops[i];
    if (op.status == OpStatus::kRefused) {
      return ctx.Transition(tx, TxStatus::kAborting, Describe(op));
    }
    if (op.status == OpStatus::kPending) pending.push_back(i);
  }
  if (pending.empty()) {
    return ctx.Transition(
        tx, TxStatus::kCommitting,
        "all " + std::to_string(tx.BranchIds().size()) + " branches " + ops.first_done);
  }
  if (now >= tx.deadline) {
    return ctx.Transition(tx, TxStatus::kAborting,
                          "deadline passed before every branch " + ops.first_done + "; " +
                              Describe(tx.ops[pending.front()]));
  }
  // In order when asked: one branch at a time, each only after the one before succeeded.
  if (tx.sequential) pending.resize(1);
  // The calls end by the deadline; and should answers still come in after it (a participant
  // slower than the timeouts), they decide nothing: the transaction is aborted.
  Status s = ctx.CallOps(tx, pending, {.not_after = tx.deadline});
  if (!s.ok()) return s;
  if (ctx.Now() >= tx.deadline) {
    return ctx.Transition(tx, TxStatus::kAborting,
                          "deadline passed before every branch " + ops.first_done +
                              " (the last answers came after it)");
  }
  bool all_answered = std::all_of(pending.begin(), pending.end(),
                                  [&](size_t i) { return tx.ops[i].status != OpStatus::kPending; });
  if (all_answered) return Status::Ok();  // the next pass goes on or decides
  *waiting = true;
  return ctx.RetryLater(tx, MaxAttempts(tx, pending), tx.deadline);
}

// Calls `op` on every branch in `targets` until each succeeded, then moves to `final_status`.
Status DrivePhaseTwo(Transaction& tx, DriveContext& ctx, const std::string& op,
                     const std::vector<size_t>& targets, TxStatus final_status,
                     const std::string& done_reason, bool* waiting) {
  std::vector<size_t> pending;
  for (size_t i : targets) {
    if (tx.ops[i].status != OpStatus::kSucceeded) pending.push_back(i);
  }
  if (pending.empty()) {
    Status s = ctx.SetAttention(tx, "");
    if (!s.ok()) return s;
    // An abort keeps the reason it was decided for.
    return ctx.Transition(tx, final_status, done_reason.empty() ? tx.reason : done_reason);
  }
  Status s = ctx.CallOps(tx, pending);
  if (!s.ok()) return s;
  std::string attention;
  std::vector<size_t> still;
  for (size_t i : pending) {
    const BranchOp& o = tx.ops[i];
    if (o.status == OpStatus::kSucceeded) continue;
    still.push_back(i);
    if (!attention.empty()) continue;
    if (o.status == OpStatus::kRefused) {
      attention = "branch " + o.branch_id + " refused " + op +
                  " after the decision (a participant bug); retrying: " + o.last_error;
    } else if (o.attempts >= kAttentionAfterAttempts) {
      attention = "branch " + o.branch_id + " " + op + " still unanswered after " +
                  std::to_string(o.attempts) + " attempts: " + o.last_error;
    }
  }
  if (still.empty()) return Status::Ok();  // the next pass finishes
  s = ctx.SetAttention(tx, attention);
  if (!s.ok()) return s;
  *waiting = true;
  return ctx.RetryLater(tx, MaxAttempts(tx, still), std::nullopt);
}

}  // namespace

Status DriveTwoPhase(Transaction& tx, DriveContext& ctx, const TwoPhaseOps& ops) {
  // Each pass either changes the status (and loops) or ends waiting or final.
  for (int pass = 0; pass < 64; ++pass) {
    bool waiting = false;
    Status s;
    switch (tx.status) {
      case TxStatus::kActive:
        s = DriveFirstPhase(tx, ctx, ops, &waiting);
        break;
      case TxStatus::kCommitting:
        s = DrivePhaseTwo(
            tx, ctx, ops.confirm, tx.OpsNamed(ops.confirm), TxStatus::kCommitted,
            "every branch " + std::string(ops.confirm == "commit" ? "committed" : "confirmed"),
            &waiting);
        break;
      case TxStatus::kAborting: {
        // Once submitted, any first op may have reached its participant: attempts are recorded
        // after the call returns, so a crash during the call leaves no trace here. Every branch
        // gets the cancel (participants answer 2xx for a branch they never saw).
        std::vector<size_t> firsts = tx.OpsNamed(ops.first);
        bool anything_sent = tx.submitted || ops.cancel_unsubmitted ||
                             std::any_of(firsts.begin(), firsts.end(),
                                         [&](size_t i) { return tx.ops[i].attempts > 0; });
        std::vector<size_t> targets =
            anything_sent ? tx.OpsNamed(ops.cancel) : std::vector<size_t>{};
        s = DrivePhaseTwo(tx, ctx, ops.cancel, targets, TxStatus::kAborted, "", &waiting);
        break;
      }
      case TxStatus::kCommitted:
      case TxStatus::kAborted:
        return Status::Ok();
      case TxStatus::kPrepared:
        return Status::Internal("a " + std::string(ModeName(tx.mode)) +
                                " transaction cannot be prepared");
    }
    if (!s.ok() || waiting) return s;
  }
  return Status::Internal("no progress driving " + tx.gid);
}

}  // namespace treaty::core
