#include "coordinator/core/drive_context_impl.h"

#include <algorithm>

#include "common/protocol/protocol.h"

namespace treaty::core {
namespace {

std::string ErrorText(const BranchReply& r) {
  if (r.http_status == 0) return r.detail;
  return "HTTP " + std::to_string(r.http_status) + (r.detail.empty() ? "" : ": " + r.detail);
}

}  // namespace

Status TransactionDriver::Context::CallOps(Transaction& tx, const std::vector<size_t>& indexes,
                                           const CallOptions& options) {
  const std::optional<TimePoint>& not_after = options.not_after;
  // The previous round's outcomes are durable before any new call: a saga's next step must not
  // run while the store could still show the step it depends on as not done (after a crash,
  // compensation targets the steps whose prerequisites are stored as succeeded).
  Duration longest{0};
  for (size_t i : indexes) {
    longest = std::max(longest, tx.ops[i].timeout.value_or(d_.options_.branch_call_timeout));
  }
  if (Status s = StartRound(tx.gid, std::min<Duration>(longest, d_.options_.lease / 2)); !s.ok()) {
    return s;
  }
  std::vector<BranchCall> calls;
  calls.reserve(indexes.size());
  for (size_t k = 0; k < indexes.size(); ++k) {
    const BranchOp& op = tx.ops[indexes[k]];
    // A call may not outlast the lease known to run, or another coordinator could take the
    // transaction over while this one still waits. The budget is the whole call's, the
    // transport's wait for a thread and its retry included.
    Duration timeout = std::min<Duration>(
        {op.timeout.value_or(d_.options_.branch_call_timeout), d_.options_.lease / 2, LeaseLeft()});
    if (not_after) {
      const auto until = std::chrono::duration_cast<Duration>(*not_after - Now());
      timeout = std::min(timeout, std::max(until, Duration(1)));
    }
    const std::string& payload =
        k < options.payloads.size() ? options.payloads[k] : op.payload_json;
    calls.push_back(BranchCall{
        .url = op.url,
        .body = protocol::CallBody(tx.gid, op.branch_id, op.op, ModeName(tx.mode), payload),
        .gid = tx.gid,
        .branch_id = op.branch_id,
        .op = op.op,
        .timeout = timeout,
        .wants_json_body = options.keep_outputs,
        .headers = CallHeaders(tx.context, d_.random_)});
  }
  const TimePoint started = Now();
  std::vector<BranchReply> replies = d_.transport_.CallAll(calls);
  for (size_t k = 0; k < replies.size() && k < calls.size(); ++k) {
    auto tp = calls[k].headers.find("traceparent");
    if (tp == calls[k].headers.end()) continue;
    if (auto parsed = ParseTraceParent(tp->second)) replies[k].span_id = parsed->span_id;
  }
  std::vector<BranchOp> updated;
  updated.reserve(indexes.size());
  for (size_t k = 0; k < indexes.size(); ++k) {
    BranchOp op = tx.ops[indexes[k]];
    const BranchReply& r = k < replies.size() ? replies[k] : BranchReply{};
    ++op.attempts;
    switch (r.outcome) {
      case BranchReply::Outcome::kDone:
        op.status = OpStatus::kSucceeded;
        op.last_error.clear();
        if (options.keep_outputs && op.output_json.empty()) {
          if (r.json_body.size() <= kMaxOutputBytes) {
            op.output_json = r.json_body;
          } else {
            op.last_error = "its answer (" + std::to_string(r.json_body.size()) +
                            " bytes) is over the " + std::to_string(kMaxOutputBytes) +
                            " bytes kept as a step's output: not kept";
          }
        }
        break;
      case BranchReply::Outcome::kRefused:
        op.status = OpStatus::kRefused;
        op.last_error = ErrorText(r);
        break;
      case BranchReply::Outcome::kUnknown:
        op.status = OpStatus::kPending;
        op.last_error = ErrorText(r);
        break;
    }
    op.AddCall(OpCall{started, r.elapsed, op.status});
    if (d_.observer_) d_.observer_->OnCall(tx, op, r);
    updated.push_back(std::move(op));
  }
  Unrecorded(tx, indexes, updated);
  for (size_t i : indexes) d_.crash_.Reach("after_" + tx.ops[i].op);
  return Status::Ok();
}

Status TransactionDriver::Context::PublishOps(Transaction& tx, const std::vector<size_t>& indexes,
                                              std::vector<OutboundMessage> messages) {
  if (messages.size() != indexes.size()) {
    return Status::Internal("PublishOps: one message per op is expected");
  }
  // As in CallOps: a delivery starts only with its whole time left on the lease.
  if (Status s = StartRound(tx.gid, d_.options_.publish_timeout); !s.ok()) return s;
  // Each message carries the transaction's trace context (its own child span), as a call does;
  // a header the client set on the message itself wins.
  std::vector<std::string> span_ids(messages.size());
  if (!tx.context.trace_id.empty()) {
    for (size_t k = 0; k < messages.size(); ++k) {
      for (auto& [name, value] : CallHeaders(tx.context, d_.random_)) {
        if (name != "traceparent" && name != "tracestate") continue;
        auto [at, added] = messages[k].headers.emplace(name, value);
        if (name == "traceparent" && added) span_ids[k] = ParseTraceParent(value)->span_id;
      }
    }
  }
  const TimePoint started = Now();
  std::vector<MessageResult> results =
      d_.messages_ ? d_.messages_->Deliver(messages)
                   : std::vector<MessageResult>(messages.size(),
                                                MessageResult{false, "no Kafka configured"});
  // One batch: each message is counted as having taken the whole delivery.
  const auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(Now() - started);
  std::vector<BranchOp> updated;
  for (size_t k = 0; k < indexes.size(); ++k) {
    BranchOp op = tx.ops[indexes[k]];
    ++op.attempts;
    const MessageResult& r = k < results.size() ? results[k] : MessageResult{};
    op.status = r.acked ? OpStatus::kSucceeded : OpStatus::kPending;
    op.last_error = r.acked ? "" : r.error;
    op.AddCall(OpCall{started, elapsed, op.status});
    if (d_.observer_) {
      BranchReply as_call{
          .outcome = r.acked ? BranchReply::Outcome::kDone : BranchReply::Outcome::kUnknown,
          .detail = op.last_error,
          .elapsed = elapsed,
          .span_id = k < span_ids.size() ? span_ids[k] : ""};
      d_.observer_->OnCall(tx, op, as_call);
    }
    updated.push_back(std::move(op));
  }
  Unrecorded(tx, indexes, updated);
  for (size_t k = 0; k < indexes.size(); ++k) d_.crash_.Reach("after_publish");
  return Status::Ok();
}

Status TransactionDriver::Context::Transition(Transaction& tx, TxStatus to,
                                              const std::string& reason) {
  const MonoTime sent = d_.clock_.Monotonic();
  const bool open_to_branches = tx.status == TxStatus::kActive && !tx.submitted;
  Status s = d_.ApplyTransition(tx, to, reason, UnrecordedOps(), &fence_);
  if (!s.ok()) return s;
  Renewed(sent);
  unrecorded_.clear();
  if (open_to_branches && !IsFinal(to)) {
    // Branches join an unsubmitted transaction until it leaves kActive (the store serializes
    // the join and this move), so the copy this drive loaded may lack some that joined since:
    // what follows the decision (each branch's cancel or abort) must see every one of them.
    auto stored = d_.store_.Load(tx.gid, /*with_log=*/false);
    if (!stored.ok()) return stored.status();  // the next drive loads it afresh
    tx.ops = std::move(stored->ops);
    tx.submitted = stored->submitted;
    tx.deadline = stored->deadline;
  }
  return Status::Ok();
}

Status TransactionDriver::Context::SetAttention(Transaction& tx, const std::string& attention) {
  if (tx.attention == attention) return Status::Ok();
  const MonoTime sent = d_.clock_.Monotonic();
  Status s = d_.store_.SetAttention(tx.gid, attention, &fence_);
  if (!s.ok()) return s;
  Renewed(sent);
  tx.attention = attention;
  return s;
}

Duration TransactionDriver::Context::Backoff(int attempts, const std::optional<OpRetry>& retry) {
  RetryPolicy policy = d_.options_.retry;
  if (retry && retry->backoff) policy.initial = *retry->backoff;
  if (retry && retry->max_backoff) policy.max = *retry->max_backoff;
  if (policy.max < policy.initial) policy.max = policy.initial;
  // No jitter: the same op gives the same due time at every drive that looks at it.
  return policy.Backoff(std::max(1, attempts), 0.5);
}

Status TransactionDriver::Context::RetryLater(Transaction& tx, int attempts,
                                              std::optional<TimePoint> not_after) {
  if (d_.observer_) d_.observer_->OnRetryScheduled(tx);
  TimePoint at = Now() + d_.options_.retry.Backoff(std::max(1, attempts), d_.random_.Random01());
  if (not_after && at > *not_after) at = *not_after;
  return WakeAt(tx, at);
}

Status TransactionDriver::Context::WakeAt(Transaction& tx, TimePoint at) {
  Status s = Flush(tx.gid);
  if (!s.ok()) return s;
  s = d_.store_.Reschedule(tx.gid, d_.options_.owner, at);
  if (s.ok()) tx.next_attempt_at = at;
  return s;
}

Status TransactionDriver::Context::Flush(const std::string& gid) {
  if (unrecorded_.empty()) return Status::Ok();
  const MonoTime sent = d_.clock_.Monotonic();
  Status s = d_.store_.RecordOps(gid, UnrecordedOps(), Now(), fence_);
  if (!s.ok()) return s;
  Renewed(sent);
  unrecorded_.clear();
  return s;
}

Status TransactionDriver::Context::StartRound(const std::string& gid, Duration budget) {
  if (Status s = Flush(gid); !s.ok()) return s;
  const Duration margin = d_.options_.lease / 10;
  if (LeaseLeft() < budget + margin ||
      lease_known_until_ - d_.clock_.Monotonic() < d_.options_.lease - margin) {
    const MonoTime sent = d_.clock_.Monotonic();
    Status s = d_.store_.RecordOps(gid, {}, Now(), fence_);  // renews only
    if (!s.ok()) return s;
    Renewed(sent);
  }
  return Status::Ok();
}

Duration TransactionDriver::Context::LeaseLeft() {
  auto left = std::chrono::duration_cast<Duration>(lease_known_until_ - d_.clock_.Monotonic()) -
              d_.options_.lease / 10;
  return std::max(left, Duration(0));
}

void TransactionDriver::Context::Unrecorded(Transaction& tx, const std::vector<size_t>& indexes,
                                            std::vector<BranchOp>& updated) {
  for (size_t k = 0; k < indexes.size(); ++k) {
    unrecorded_[{updated[k].branch_id, updated[k].op}] = updated[k];
    tx.ops[indexes[k]] = std::move(updated[k]);
  }
}

std::vector<BranchOp> TransactionDriver::Context::UnrecordedOps() const {
  std::vector<BranchOp> ops;
  ops.reserve(unrecorded_.size());
  for (const auto& [key, op] : unrecorded_) ops.push_back(op);
  return ops;
}

}  // namespace treaty::core
