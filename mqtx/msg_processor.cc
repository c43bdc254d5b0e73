#include "mqtx/msg_processor.h"

#include <algorithm>

#include "common/protocol/protocol.h"

namespace treaty::core {
namespace {

// The message a "publish" op delivers, stamped with a stable id for consumers to drop
// duplicates (the kit's inbox reads the event id) and with its transaction's gid.
OutboundMessage MessageOf(const Transaction& tx, const BranchOp& op) {
  OutboundMessage m{op.topic, op.message_key, op.payload_json, op.message_headers};
  const std::string id = protocol::MessageId(tx.gid, op.branch_id);
  m.headers[protocol::kMessageIdHeader] = id;
  m.headers[protocol::kEventIdHeader] = id;
  m.headers[protocol::kGidMessageHeader] = tx.gid;
  return m;
}

}  // namespace

std::vector<std::string> MsgProcessor::OpsDueIn(TxStatus status) const {
  if (status == TxStatus::kActive || status == TxStatus::kPrepared) return {protocol::kQuery};
  if (status == TxStatus::kCommitting) return {protocol::kPublish, protocol::kAction};
  return {};
}

const std::vector<std::string>& MsgProcessor::BranchOps() const {
  static const std::vector<std::string> kOps = {protocol::kAction};
  return kOps;
}

const std::vector<std::string>& MsgProcessor::RequiredOps(bool) const { return BranchOps(); }

const std::vector<std::string>& MsgProcessor::RequestFields() const {
  static const std::vector<std::string> kFields = {"query", "messages", "check_back"};
  return kFields;
}

Status MsgProcessor::Plan(const BeginRequest& r, const PlanDefaults& defaults,
                          Transaction& tx) const {
  if (Status s = RefuseUnreadFields(r); !s.ok()) return s;
  if (r.timeout) return Status::InvalidField("timeout", "a msg transaction has check_back instead");
  if (!r.query_url || r.query_url->empty()) {
    return Status::InvalidField("query", "is required (the service's check-back URL)");
  }
  const bool has_messages = r.messages && !r.messages->empty();
  const bool has_branches = r.branches && !r.branches->empty();
  if (!has_messages && !has_branches) {
    return Status::InvalidField("messages", "a msg transaction needs messages or branches");
  }
  int index = 0;
  for (const MessageSpec& m : r.messages.value_or(std::vector<MessageSpec>{})) {
    tx.ops.push_back(BranchOp{.branch_id = "msg-" + std::to_string(index),
                              .op = protocol::kPublish,
                              .position = 1000 + index,
                              .payload_json = m.value_json,
                              .topic = m.topic,
                              .message_key = m.key,
                              .message_headers = m.headers});
    ++index;
  }
  tx.ops.push_back(BranchOp{
      .branch_id = "query", .op = protocol::kQuery, .position = 2000, .url = *r.query_url});
  if (has_branches) {
    if (Status s = PlanBranches(*r.branches, tx); !s.ok()) return s;
  }
  tx.status = TxStatus::kPrepared;
  tx.submitted = false;
  tx.deadline = tx.created_at + r.check_back.value_or(defaults.check_back);
  tx.next_attempt_at = tx.deadline;
  return Status::Ok();
}

SubmitStep MsgProcessor::OnSubmit(const Transaction& tx) const {
  switch (tx.status) {
    case TxStatus::kPrepared:
      return {.kind = SubmitStep::Kind::kDecide,
              .to = TxStatus::kCommitting,
              .why = "submitted by the service"};
    case TxStatus::kAborting:
    case TxStatus::kAborted:
      return {.kind = SubmitStep::Kind::kRefuse,
              .why = "is " + std::string(StatusName(tx.status)) + ": it cannot be submitted"};
    default:
      return {};
  }
}

bool MsgProcessor::ChecksBeforeAbort(const Transaction& tx) const {
  return tx.status == TxStatus::kPrepared;
}

Status MsgProcessor::CheckBackNow(Transaction& tx, DriveContext& ctx) {
  if (tx.status != TxStatus::kPrepared) return Drive(tx, ctx);
  std::vector<size_t> query = tx.OpsNamed(protocol::kQuery);
  if (query.empty()) return Status::Unavailable("no query URL to check back with");
  BranchOp& q = tx.ops[query[0]];
  const BranchOp before = q;
  q.status = OpStatus::kPending;  // asked afresh, as at the check-back time
  Status s = ctx.CallOps(tx, query);
  if (!s.ok()) return s;
  if (q.status == OpStatus::kRefused) {
    s = ctx.Transition(tx, TxStatus::kAborting, "aborted: check-back says the service rolled back");
    if (!s.ok()) return s;
    return Drive(tx, ctx);
  }
  if (q.status == OpStatus::kSucceeded) {
    s = ctx.Transition(tx, TxStatus::kCommitting, "check-back: the service committed");
    if (!s.ok()) return s;
    s = Drive(tx, ctx);
    if (!s.ok()) return s;
    return Status::Conflict(
        "not aborted: the service says its local transaction committed, so "
        "its messages are delivered");
  }
  const std::string error = q.last_error;
  q = before;  // nothing is recorded of a check that got no answer
  return Status::Conflict(
      "not aborted: the service could not be asked whether its local "
      "transaction committed (" +
      error + "); nothing changed");
}

Status MsgProcessor::Drive(Transaction& tx, DriveContext& ctx) {
  for (int pass = 0; pass < 16; ++pass) {
    switch (tx.status) {
      case TxStatus::kPrepared: {
        TimePoint now = ctx.Now();
        if (now < tx.deadline) return ctx.WakeAt(tx, tx.deadline);  // check-back time
        std::vector<size_t> query = tx.OpsNamed(protocol::kQuery);
        if (query.empty()) {
          return ctx.Transition(tx, TxStatus::kAborting, "no query URL to check back with");
        }
        // A check's answer is the op's outcome; it is asked afresh each time.
        tx.ops[query[0]].status = OpStatus::kPending;
        Status s = ctx.CallOps(tx, query);
        if (!s.ok()) return s;
        const BranchOp& q = tx.ops[query[0]];
        if (q.status == OpStatus::kSucceeded) {
          s = ctx.Transition(tx, TxStatus::kCommitting, "check-back: the service committed");
          if (!s.ok()) return s;
          continue;
        }
        if (q.status == OpStatus::kRefused) {
          s = ctx.Transition(tx, TxStatus::kAborting, "check-back: the service rolled back");
          if (!s.ok()) return s;
          continue;
        }
        if (q.attempts >= max_checks_) {
          s = ctx.SetAttention(tx, "check-back unanswered after " + std::to_string(q.attempts) +
                                       " checks: " + q.last_error);
          if (!s.ok()) return s;
        }
        return ctx.RetryLater(tx, q.attempts, std::nullopt);
      }
      case TxStatus::kCommitting: {
        std::vector<size_t> publish, actions;
        for (size_t i : tx.OpsNamed(protocol::kPublish)) {
          if (tx.ops[i].status != OpStatus::kSucceeded) publish.push_back(i);
        }
        for (size_t i : tx.OpsNamed(protocol::kAction)) {
          if (tx.ops[i].status != OpStatus::kSucceeded) actions.push_back(i);
        }
        if (publish.empty() && actions.empty()) {
          Status s = ctx.SetAttention(tx, "");
          if (!s.ok()) return s;
          return ctx.Transition(tx, TxStatus::kCommitted, "every message delivered");
        }
        if (!publish.empty()) {
          std::vector<OutboundMessage> messages;
          for (size_t i : publish) messages.push_back(MessageOf(tx, tx.ops[i]));
          Status s = ctx.PublishOps(tx, publish, std::move(messages));
          if (!s.ok()) return s;
        }
        if (!actions.empty()) {
          Status s = ctx.CallOps(tx, actions);
          if (!s.ok()) return s;
        }
        std::vector<size_t> still;
        for (size_t i : publish) {
          if (tx.ops[i].status != OpStatus::kSucceeded) still.push_back(i);
        }
        for (size_t i : actions) {
          if (tx.ops[i].status != OpStatus::kSucceeded) still.push_back(i);
        }
        if (still.empty()) continue;
        const BranchOp& o = tx.ops[still.front()];
        if (o.attempts >= 5) {
          Status s =
              ctx.SetAttention(tx, o.branch_id + " " + o.op + " still failing after " +
                                       std::to_string(o.attempts) + " attempts: " + o.last_error);
          if (!s.ok()) return s;
        }
        int attempts = 0;
        for (size_t i : still) attempts = std::max(attempts, tx.ops[i].attempts);
        return ctx.RetryLater(tx, attempts, std::nullopt);
      }
      case TxStatus::kAborting:
        // The half messages are simply dropped: nothing was ever sent.
        return ctx.Transition(tx, TxStatus::kAborted, tx.reason);
      case TxStatus::kCommitted:
      case TxStatus::kAborted:
        return Status::Ok();
      case TxStatus::kActive:
        return Status::Internal("a msg transaction is never active");
    }
  }
  return Status::Internal("no progress driving msg " + tx.gid);
}

}  // namespace treaty::core
