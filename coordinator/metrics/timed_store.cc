#include "coordinator/metrics/timed_store.h"

namespace treaty::metrics {

Result<core::CreateResult> TimedStore::Create(const core::Transaction& tx, const std::string& owner,
                                              Duration lease) {
  return Timed("create", [&] { return inner_.Create(tx, owner, lease); });
}
Result<core::Transaction> TimedStore::Load(const std::string& gid, bool with_log) {
  return Timed("load", [&] { return inner_.Load(gid, with_log); });
}
Status TimedStore::AddBranch(const std::string& gid, const std::vector<core::BranchOp>& ops) {
  return Timed("add_branch", [&] { return inner_.AddBranch(gid, ops); });
}
Status TimedStore::MarkSubmitted(const std::string& gid, core::TimePoint now) {
  return Timed("mark_submitted", [&] { return inner_.MarkSubmitted(gid, now); });
}
Status TimedStore::Transition(const std::string& gid, core::TxStatus from, core::TxStatus to,
                              const std::string& reason, core::TimePoint now,
                              const std::vector<core::BranchOp>& ops, const core::Fence* fence) {
  return Timed("transition",
               [&] { return inner_.Transition(gid, from, to, reason, now, ops, fence); });
}
Status TimedStore::RecordOps(const std::string& gid, const std::vector<core::BranchOp>& ops,
                             core::TimePoint now, const core::Fence& fence) {
  return Timed("record_ops", [&] { return inner_.RecordOps(gid, ops, now, fence); });
}
Status TimedStore::SetAttention(const std::string& gid, const std::string& attention,
                                const core::Fence* fence) {
  return Timed("set_attention", [&] { return inner_.SetAttention(gid, attention, fence); });
}
Status TimedStore::Reschedule(const std::string& gid, const std::string& owner,
                              core::TimePoint next_attempt_at) {
  return Timed("reschedule", [&] { return inner_.Reschedule(gid, owner, next_attempt_at); });
}
Status TimedStore::MakeDue(const std::string& gid, core::TimePoint now) {
  return Timed("make_due", [&] { return inner_.MakeDue(gid, now); });
}
Status TimedStore::Force(const std::string& gid, core::TxStatus from, core::TxStatus to,
                         const std::string& reason, const std::string& actor, core::TimePoint now) {
  return Timed("force", [&] { return inner_.Force(gid, from, to, reason, actor, now); });
}
Result<std::vector<std::string>> TimedStore::ClaimDue(const std::string& owner, core::TimePoint now,
                                                      Duration lease, int limit) {
  return Timed("claim_due", [&] { return inner_.ClaimDue(owner, now, lease, limit); });
}
Result<bool> TimedStore::TryLease(const std::string& gid, const std::string& owner,
                                  Duration lease) {
  return Timed("try_lease", [&] { return inner_.TryLease(gid, owner, lease); });
}
Status TimedStore::ReleaseLeases(const std::string& node) {
  return Timed("release_leases", [&] { return inner_.ReleaseLeases(node); });
}
Result<core::ListPage> TimedStore::List(const core::ListFilter& filter) {
  return Timed("list", [&] { return inner_.List(filter); });
}
Result<core::StatusCounts> TimedStore::CountByStatus() {
  return Timed("count_by_status", [&] { return inner_.CountByStatus(); });
}

}  // namespace treaty::metrics
