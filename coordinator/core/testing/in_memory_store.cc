#include "coordinator/core/testing/in_memory_store.h"

#include "coordinator/core/state_machine.h"

namespace treaty::core::testing {

Status InMemoryStore::CheckUp(const char* method) const {
  ++calls_[method];
  return unavailable_ ? Status::Unavailable("store down (test)") : Status::Ok();
}

int InMemoryStore::Calls(const std::string& method) const {
  MutexLock lock(mu_);
  auto it = calls_.find(method);
  return it == calls_.end() ? 0 : it->second;
}

void InMemoryStore::SetUnavailable(bool unavailable) {
  MutexLock lock(mu_);
  unavailable_ = unavailable;
}

void InMemoryStore::ExpireLeases() {
  MutexLock lock(mu_);
  for (auto& [gid, row] : rows_) row.lease_until = TimePoint{};
}

namespace {

// The monotonic merge of an op's outcome (store.h): succeeded stays, refused never goes back to
// pending.
void MergeOp(BranchOp& stored, const BranchOp& o) {
  if (stored.status == OpStatus::kSucceeded) return;
  if (stored.status == OpStatus::kRefused && o.status == OpStatus::kPending) {
    // The calls go with the higher attempt count.
    if (o.attempts >= stored.attempts) stored.calls = o.calls;
    stored.attempts = std::max(stored.attempts, o.attempts);
    stored.last_error = o.last_error;
    return;
  }
  stored.status = o.status;
  stored.attempts = o.attempts;
  stored.last_error = o.last_error;
  stored.calls = o.calls;
  stored.output_json = o.output_json;
}

}  // namespace

Status InMemoryStore::Fenced(Row& row, const Fence& fence) {
  const TimePoint now = clock_->Now();
  if (row.owner != fence.owner || row.lease_until <= now) {
    return Status::LeaseLost("transaction " + row.tx.gid + " is no longer leased to " +
                             fence.owner);
  }
  row.lease_until = now + fence.lease;
  return Status::Ok();
}

TimePoint InMemoryStore::LeaseUntil(const std::string& gid) {
  MutexLock lock(mu_);
  auto it = rows_.find(gid);
  return it == rows_.end() ? TimePoint{} : it->second.lease_until;
}

std::string InMemoryStore::LeaseOwner(const std::string& gid) {
  MutexLock lock(mu_);
  auto it = rows_.find(gid);
  return it == rows_.end() ? "" : it->second.owner;
}

Result<CreateResult> InMemoryStore::Create(const Transaction& tx, const std::string& owner,
                                           Duration lease) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(tx.gid);
  if (it != rows_.end()) {
    CreateResult existing{false, it->second.tx};
    existing.existing.log.clear();  // as Load without the log
    return existing;
  }
  Row row{tx, owner, clock_->Now() + lease};
  const std::string reason =
      tx.submitted ? "begun with " + std::to_string(tx.BranchIds().size()) + " branches"
                   : "begun; waiting for branches";
  row.tx.log = {LogEntry{tx.created_at, std::nullopt, tx.status, reason}};
  rows_.emplace(tx.gid, std::move(row));
  return CreateResult{true, {}};
}

Result<Transaction> InMemoryStore::Load(const std::string& gid, bool with_log) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(gid);
  if (it == rows_.end()) return Status::NotFound("no transaction " + gid);
  Transaction tx = it->second.tx;
  if (!with_log) tx.log.clear();
  return tx;
}

Status InMemoryStore::AddBranch(const std::string& gid, const std::vector<BranchOp>& ops) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(gid);
  if (it == rows_.end()) return Status::NotFound("no transaction " + gid);
  Transaction& tx = it->second.tx;
  if (tx.status != TxStatus::kActive || tx.submitted) {
    return Status::Conflict("transaction " + gid + " takes no more branches");
  }
  // A branch id is taken whatever ops the new registration names.
  for (const BranchOp& o : ops) {
    for (const BranchOp& stored : tx.ops) {
      if (stored.branch_id == o.branch_id) {
        return Status::Conflict("branch " + o.branch_id + " is registered already");
      }
    }
  }
  tx.ops.insert(tx.ops.end(), ops.begin(), ops.end());
  return Status::Ok();
}

Status InMemoryStore::MarkSubmitted(const std::string& gid, TimePoint now) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(gid);
  if (it == rows_.end()) return Status::NotFound("no transaction " + gid);
  Transaction& tx = it->second.tx;
  if (tx.status != TxStatus::kActive || tx.submitted) return Status::Conflict("not submittable");
  tx.submitted = true;
  tx.next_attempt_at = now;
  tx.updated_at = now;
  tx.log.push_back(LogEntry{now, TxStatus::kActive, TxStatus::kActive, "submitted"});
  it->second.wake_requested = true;
  return Status::Ok();
}

Status InMemoryStore::Transition(const std::string& gid, TxStatus from, TxStatus to,
                                 const std::string& reason, TimePoint now,
                                 const std::vector<BranchOp>& ops, const Fence* fence) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(gid);
  if (it == rows_.end()) return Status::NotFound("no transaction " + gid);
  Transaction& tx = it->second.tx;
  const TimePoint lease_before = it->second.lease_until;
  if (fence != nullptr) {
    if (Status s = Fenced(it->second, *fence); !s.ok()) return s;
  }
  // Nothing changes unless everything below holds.
  auto refuse = [&](Status s) {
    it->second.lease_until = lease_before;
    return s;
  };
  if (tx.status != from) {
    return refuse(
        Status::Conflict("transaction " + gid + " is " + std::string(StatusName(tx.status))));
  }
  if (FindTransition(tx.mode, from, to) == nullptr) {
    return refuse(Status::Conflict("illegal transition " + std::string(StatusName(from)) + " -> " +
                                   std::string(StatusName(to))));
  }
  for (const BranchOp& o : ops) {
    if (tx.FindOp(o.branch_id, o.op) == nullptr) {
      return refuse(Status::NotFound("no op " + o.branch_id + "/" + o.op));
    }
  }
  for (const BranchOp& o : ops) MergeOp(*tx.FindOp(o.branch_id, o.op), o);
  tx.status = to;
  tx.reason = reason;
  tx.updated_at = now;
  tx.next_attempt_at = now;
  tx.log.push_back(LogEntry{now, from, to, reason});
  return Status::Ok();
}

Status InMemoryStore::RecordOps(const std::string& gid, const std::vector<BranchOp>& ops,
                                TimePoint now, const Fence& fence) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(gid);
  if (it == rows_.end()) return Status::NotFound("no transaction " + gid);
  // The fence first (LeaseLost whatever else is wrong), and nothing changes, the lease
  // included, unless every op exists.
  const TimePoint lease_before = it->second.lease_until;
  if (Status s = Fenced(it->second, fence); !s.ok()) return s;
  for (const BranchOp& o : ops) {
    if (it->second.tx.FindOp(o.branch_id, o.op) == nullptr) {
      it->second.lease_until = lease_before;
      return Status::NotFound("no op " + o.branch_id + "/" + o.op);
    }
  }
  for (const BranchOp& o : ops) MergeOp(*it->second.tx.FindOp(o.branch_id, o.op), o);
  if (ops.empty()) return Status::Ok();
  it->second.tx.updated_at = now;
  return Status::Ok();
}

Status InMemoryStore::SetAttention(const std::string& gid, const std::string& attention,
                                   const Fence* fence) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(gid);
  if (it == rows_.end()) return Status::NotFound("no transaction " + gid);
  if (fence != nullptr) {
    if (Status s = Fenced(it->second, *fence); !s.ok()) return s;
  }
  it->second.tx.attention = attention;
  return Status::Ok();
}

Status InMemoryStore::Reschedule(const std::string& gid, const std::string& owner,
                                 TimePoint next_attempt_at) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(gid);
  if (it == rows_.end()) return Status::NotFound("no transaction " + gid);
  Row& row = it->second;
  if (row.owner != owner) return Status::Ok();
  if (!row.wake_requested) row.tx.next_attempt_at = next_attempt_at;
  row.wake_requested = false;
  row.lease_until = TimePoint{};
  return Status::Ok();
}

Status InMemoryStore::MakeDue(const std::string& gid, TimePoint now) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(gid);
  if (it == rows_.end()) return Status::NotFound("no transaction " + gid);
  if (IsFinal(it->second.tx.status)) {
    return Status::Conflict("transaction " + gid + " is not unfinished");
  }
  it->second.tx.next_attempt_at = now;
  it->second.wake_requested = true;
  return Status::Ok();
}

Status InMemoryStore::Force(const std::string& gid, TxStatus from, TxStatus to,
                            const std::string& reason, const std::string& actor, TimePoint now) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(gid);
  if (it == rows_.end()) return Status::NotFound("no transaction " + gid);
  Row& row = it->second;
  if (row.tx.status != from) {
    return Status::Conflict("transaction " + gid + " is no longer " +
                            std::string(StatusName(from)));
  }
  row.tx.status = to;
  row.tx.reason = reason;
  row.tx.attention.clear();
  row.tx.updated_at = now;
  row.tx.next_attempt_at = now;
  row.owner.clear();
  row.lease_until = TimePoint{};
  row.wake_requested = false;
  row.tx.log.push_back(LogEntry{now, from, to, reason, actor});
  return Status::Ok();
}

Result<std::vector<std::string>> InMemoryStore::ClaimDue(const std::string& owner, TimePoint now,
                                                         Duration lease, int limit) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  const TimePoint store_now = clock_->Now();
  std::vector<std::string> out;
  for (auto& [gid, row] : rows_) {
    if (static_cast<int>(out.size()) >= limit) break;
    if (IsFinal(row.tx.status) || row.tx.next_attempt_at > now || row.lease_until > store_now) {
      continue;
    }
    row.owner = owner;
    row.lease_until = store_now + lease;
    out.push_back(gid);
  }
  return out;
}

Result<bool> InMemoryStore::TryLease(const std::string& gid, const std::string& owner,
                                     Duration lease) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  auto it = rows_.find(gid);
  if (it == rows_.end()) return Status::NotFound("no transaction " + gid);
  Row& row = it->second;
  if (IsFinal(row.tx.status)) return false;
  const TimePoint now = clock_->Now();
  if (row.lease_until > now && row.owner != owner) return false;
  row.owner = owner;
  row.lease_until = now + lease;
  return true;
}

Status InMemoryStore::ReleaseLeases(const std::string& node) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  for (auto& [gid, row] : rows_) {
    if (row.owner == node || row.owner.rfind(node + "#", 0) == 0) row.lease_until = TimePoint{};
  }
  return Status::Ok();
}

Result<ListPage> InMemoryStore::List(const ListFilter& filter) {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  std::vector<Transaction> out;
  for (auto it = rows_.upper_bound(filter.after_gid); it != rows_.end(); ++it) {
    if (static_cast<int>(out.size()) >= filter.limit) break;
    const Transaction& tx = it->second.tx;
    if (filter.status && tx.status != *filter.status) continue;
    if (filter.mode && tx.mode != *filter.mode) continue;
    if (filter.created_since && tx.created_at < *filter.created_since) continue;
    if (filter.created_before && tx.created_at >= *filter.created_before) continue;
    if (filter.stuck_at &&
        (IsFinal(tx.status) || (tx.attention.empty() && tx.deadline >= *filter.stuck_at))) {
      continue;
    }
    Transaction summary = tx;
    summary.ops.clear();
    summary.log.clear();
    out.push_back(std::move(summary));
  }
  return ListPage{std::move(out), {}};
}

Result<StatusCounts> InMemoryStore::CountByStatus() {
  MutexLock lock(mu_);
  if (Status s = CheckUp(__func__); !s.ok()) return s;
  std::map<TxStatus, int64_t> out;
  for (const auto& [gid, row] : rows_) ++out[row.tx.status];
  return StatusCounts{std::move(out), {}};
}

}  // namespace treaty::core::testing
