#include "coordinator/core/processor.h"

#include <algorithm>
#include <set>

#include "coordinator/core/state_machine.h"

namespace treaty::core {
namespace {

bool Has(const std::vector<std::string>& list, const std::string& name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

}  // namespace

const std::vector<std::string>& Processor::RequestFields() const {
  static const std::vector<std::string> kNone;
  return kNone;
}

Status Processor::RefuseUnreadFields(const BeginRequest& r) const {
  const std::vector<std::string>& reads = RequestFields();
  const std::pair<const char*, bool> given[] = {{"sequential", r.sequential.has_value()},
                                                {"query", r.query_url.has_value()},
                                                {"messages", r.messages.has_value()},
                                                {"check_back", r.check_back.has_value()}};
  for (const auto& [field, present] : given) {
    if (present && !Has(reads, field)) {
      return Status::InvalidField(field, "is not a field of mode " + std::string(ModeName(mode())));
    }
  }
  return Status::Ok();
}

Status Processor::CheckBranch(const BranchSpec& b, int position, bool registered,
                              std::vector<BranchOp>* ops) const {
  if (!ValidId(b.id, kMaxBranchIdLength)) {
    return Status::InvalidArgument("branch id \"" + b.id + "\" must be 1 to " +
                                   std::to_string(kMaxBranchIdLength) +
                                   " characters of A-Z a-z 0-9 . _ : -");
  }
  if (!b.after.empty() && !OrdersBranches()) {
    return Status::InvalidArgument("branch " + b.id + ": after applies to sagas only");
  }
  for (const std::string& op : RequiredOps(registered)) {
    auto it = b.urls.find(op);
    if (it == b.urls.end() || it->second.empty()) {
      return Status::InvalidArgument("branch " + b.id + " has no " + op + " URL");
    }
  }
  for (const auto& [op, url] : b.urls) {
    if (!Has(BranchOps(), op)) {
      return Status::InvalidArgument("branch " + b.id + ": " + op + " is not an op of " +
                                     std::string(ModeName(mode())));
    }
  }
  if (!TakesOpPolicies() && (b.retry || !b.op_settings.empty())) {
    return Status::InvalidArgument("branch " + b.id + ": retry policies apply to saga steps only");
  }
  for (const auto& [op, settings] : b.op_settings) {
    if (!b.urls.count(op)) {
      return Status::InvalidArgument("branch " + b.id + ": settings for " + op +
                                     ", which the branch has no URL for");
    }
  }
  for (const std::string& op : BranchOps()) {
    auto it = b.urls.find(op);
    if (it == b.urls.end()) continue;
    BranchOp o{.branch_id = b.id,
               .op = op,
               .position = position,
               .url = it->second,
               .payload_json = b.payload_json,
               .timeout = b.timeout,
               .after = b.after};
    // The branch's retry policy is its first op's (a saga's action); later ops have their own.
    if (op == BranchOps().front()) o.retry = b.retry;
    if (auto s = b.op_settings.find(op); s != b.op_settings.end()) {
      if (s->second.payload_json) o.payload_json = *s->second.payload_json;
      if (s->second.timeout) o.timeout = s->second.timeout;
      if (s->second.retry) o.retry = s->second.retry;
    }
    ops->push_back(std::move(o));
  }
  return Status::Ok();
}

Status Processor::PlanBranches(const std::vector<BranchSpec>& branches, Transaction& tx) const {
  if (branches.empty()) return Status::InvalidField("branches", "branches must not be empty");
  std::set<std::string> ids;
  int position = 0;
  for (const BranchSpec& b : branches) {
    if (!ids.insert(b.id).second) {
      return Status::InvalidArgument("branch id " + b.id + " appears twice");
    }
    if (Status s = CheckBranch(b, position++, /*registered=*/false, &tx.ops); !s.ok()) return s;
  }
  return Status::Ok();
}

Status Processor::Plan(const BeginRequest& r, const PlanDefaults& defaults, Transaction& tx) const {
  if (Status s = RefuseUnreadFields(r); !s.ok()) return s;
  if (r.branches) {
    if (Status s = PlanBranches(*r.branches, tx); !s.ok()) return s;
  }
  const TimePoint now = tx.created_at;
  tx.status = InitialStatus(mode());
  tx.submitted = r.branches.has_value();
  tx.deadline = now + r.timeout.value_or(defaults.timeout);
  // A begun transaction waits for its client; if never submitted, it is due at its deadline.
  tx.next_attempt_at = tx.submitted ? now : tx.deadline;
  return Status::Ok();
}

Status Processor::CanForce(const Transaction& tx, TxStatus to) const {
  if (IsFinal(tx.status)) {
    return Status::Conflict("it is " + std::string(StatusName(tx.status)) + " already");
  }
  if (to == TxStatus::kCommitted && tx.status != TxStatus::kCommitting) {
    return Status::Conflict("commit was never decided (it is " +
                            std::string(StatusName(tx.status)) +
                            "): forcing it committed could contradict participants that were "
                            "told, or will be told, to abort; force it aborted instead");
  }
  if (to == TxStatus::kAborted && tx.status == TxStatus::kCommitting) {
    return Status::Conflict(
        "commit was decided (it is committing): participants may have committed already; "
        "force it committed instead");
  }
  return Status::Ok();
}

std::vector<std::string> Processor::OpsDueIn(TxStatus status) const {
  const std::vector<std::string>& ops = BranchOps();
  switch (status) {
    case TxStatus::kActive:
    case TxStatus::kPrepared:
      return {ops.front()};
    case TxStatus::kCommitting:
      return ops.size() > 1 ? std::vector<std::string>{ops[1]} : std::vector<std::string>{};
    case TxStatus::kAborting:
      return ops.size() > 2 ? std::vector<std::string>{ops.back()} : std::vector<std::string>{};
    default:
      return {};
  }
}

SubmitStep Processor::OnSubmit(const Transaction& tx) const {
  using Kind = SubmitStep::Kind;
  switch (tx.status) {
    case TxStatus::kActive:
      if (tx.submitted) return {};
      if (tx.ops.empty()) return {.kind = Kind::kRefuse, .why = "has no branches to submit"};
      return {.kind = Kind::kMarkSubmitted};
    case TxStatus::kAborting:
    case TxStatus::kAborted:
      return {.kind = Kind::kRefuse,
              .why = "is " + std::string(StatusName(tx.status)) + ": it cannot be submitted"};
    default:
      return {};  // submitted before and decided: harmless
  }
}

}  // namespace treaty::core
