#include "coordinator/core/testing/faulty_store.h"

namespace treaty::core::testing {
namespace {

constexpr std::array<std::string_view, kStoreMethods> kNames = {
    "Create",    "Load",         "AddBranch",     "MarkSubmitted", "Transition",
    "RecordOps", "SetAttention", "Reschedule",    "MakeDue",       "Force",
    "ClaimDue",  "TryLease",     "ReleaseLeases", "List",          "CountByStatus",
};

size_t Index(StoreMethod method) { return static_cast<size_t>(method); }

}  // namespace

std::string_view StoreMethodName(StoreMethod method) { return kNames.at(Index(method)); }

std::optional<StoreMethod> ParseStoreMethod(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<StoreMethod>(i);
  }
  return std::nullopt;
}

void FaultyStore::Fail(StoreMethod method, StoreFault fault) {
  MutexLock lock(mu_);
  faults_[Index(method)] = std::move(fault);
}

bool FaultyStore::Fail(std::string_view method, StoreFault fault) {
  std::optional<StoreMethod> m = ParseStoreMethod(method);
  if (!m) return false;
  Fail(*m, std::move(fault));
  return true;
}

void FaultyStore::FailOnce(StoreMethod method, Status status, bool after_write) {
  Fail(method, StoreFault{std::move(status), 1, after_write});
}

void FaultyStore::FailAll(StoreFault fault) {
  MutexLock lock(mu_);
  for (auto& f : faults_) f = fault;
}

void FaultyStore::Clear(StoreMethod method) {
  MutexLock lock(mu_);
  faults_[Index(method)].reset();
}

void FaultyStore::ClearAll() {
  MutexLock lock(mu_);
  for (auto& f : faults_) f.reset();
}

int FaultyStore::Calls(StoreMethod method) const {
  MutexLock lock(mu_);
  return calls_[Index(method)];
}

int FaultyStore::Injected(StoreMethod method) const {
  MutexLock lock(mu_);
  return injected_[Index(method)];
}

std::optional<StoreFault> FaultyStore::Take(StoreMethod method) {
  MutexLock lock(mu_);
  ++calls_[Index(method)];
  std::optional<StoreFault>& fault = faults_[Index(method)];
  if (!fault) return std::nullopt;
  StoreFault taken = *fault;
  if (fault->times > 0 && --fault->times == 0) fault.reset();
  ++injected_[Index(method)];
  return taken;
}

Result<CreateResult> FaultyStore::Create(const Transaction& tx, const std::string& owner,
                                         Duration lease) {
  return Run<Result<CreateResult>>(StoreMethod::kCreate,
                                   [&] { return inner_.Create(tx, owner, lease); });
}

Result<Transaction> FaultyStore::Load(const std::string& gid, bool with_log) {
  return Run<Result<Transaction>>(StoreMethod::kLoad, [&] { return inner_.Load(gid, with_log); });
}

Status FaultyStore::AddBranch(const std::string& gid, const std::vector<BranchOp>& ops) {
  return Run<Status>(StoreMethod::kAddBranch, [&] { return inner_.AddBranch(gid, ops); });
}

Status FaultyStore::MarkSubmitted(const std::string& gid, TimePoint now) {
  return Run<Status>(StoreMethod::kMarkSubmitted, [&] { return inner_.MarkSubmitted(gid, now); });
}

Status FaultyStore::Transition(const std::string& gid, TxStatus from, TxStatus to,
                               const std::string& reason, TimePoint now,
                               const std::vector<BranchOp>& ops, const Fence* fence) {
  return Run<Status>(StoreMethod::kTransition,
                     [&] { return inner_.Transition(gid, from, to, reason, now, ops, fence); });
}

Status FaultyStore::RecordOps(const std::string& gid, const std::vector<BranchOp>& ops,
                              TimePoint now, const Fence& fence) {
  return Run<Status>(StoreMethod::kRecordOps,
                     [&] { return inner_.RecordOps(gid, ops, now, fence); });
}

Status FaultyStore::SetAttention(const std::string& gid, const std::string& attention,
                                 const Fence* fence) {
  return Run<Status>(StoreMethod::kSetAttention,
                     [&] { return inner_.SetAttention(gid, attention, fence); });
}

Status FaultyStore::Reschedule(const std::string& gid, const std::string& owner,
                               TimePoint next_attempt_at) {
  return Run<Status>(StoreMethod::kReschedule,
                     [&] { return inner_.Reschedule(gid, owner, next_attempt_at); });
}

Status FaultyStore::MakeDue(const std::string& gid, TimePoint now) {
  return Run<Status>(StoreMethod::kMakeDue, [&] { return inner_.MakeDue(gid, now); });
}

Status FaultyStore::Force(const std::string& gid, TxStatus from, TxStatus to,
                          const std::string& reason, const std::string& actor, TimePoint now) {
  return Run<Status>(StoreMethod::kForce,
                     [&] { return inner_.Force(gid, from, to, reason, actor, now); });
}

Result<std::vector<std::string>> FaultyStore::ClaimDue(const std::string& owner, TimePoint now,
                                                       Duration lease, int limit) {
  return Run<Result<std::vector<std::string>>>(
      StoreMethod::kClaimDue, [&] { return inner_.ClaimDue(owner, now, lease, limit); });
}

Result<bool> FaultyStore::TryLease(const std::string& gid, const std::string& owner,
                                   Duration lease) {
  return Run<Result<bool>>(StoreMethod::kTryLease,
                           [&] { return inner_.TryLease(gid, owner, lease); });
}

Status FaultyStore::ReleaseLeases(const std::string& node) {
  return Run<Status>(StoreMethod::kReleaseLeases, [&] { return inner_.ReleaseLeases(node); });
}

Result<ListPage> FaultyStore::List(const ListFilter& filter) {
  return Run<Result<ListPage>>(StoreMethod::kList, [&] { return inner_.List(filter); });
}

Result<StatusCounts> FaultyStore::CountByStatus() {
  return Run<Result<StatusCounts>>(StoreMethod::kCountByStatus,
                                   [&] { return inner_.CountByStatus(); });
}

}  // namespace treaty::core::testing
