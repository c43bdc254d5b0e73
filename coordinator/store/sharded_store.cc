#include "coordinator/store/sharded_store.h"

#include <algorithm>
#include <map>

#include "common/log.h"

namespace treaty::store {
namespace {

const Logger kLog("treatyd");

}  // namespace

struct ShardedStore::ShardState {
  std::atomic<bool> ready{false};
  std::atomic<bool> down{false};  // its last answer was Unavailable
};

ShardedStore::ShardedStore(std::vector<StoreShard> shards, SlotMap map)
    : shards_(std::move(shards)),
      map_(std::move(map)),
      state_(std::make_unique<ShardState[]>(shards_.size())),
      pending_versions_(shards_.size()) {}

ShardedStore::~ShardedStore() = default;

void ShardedStore::SetReady(int shard) { state_[static_cast<size_t>(shard)].ready = true; }

bool ShardedStore::Ready(int shard) const { return state_[static_cast<size_t>(shard)].ready; }

Result<int> ShardedStore::Route(const std::string& gid) const {
  const int shard = map_.ShardOf(gid);
  if (!Ready(shard)) {
    return Status::Unavailable("store shard " + std::to_string(shard) +
                               " (holding this gid) is not ready: its schema and slot map are "
                               "not checked yet");
  }
  return shard;
}

Status ShardedStore::Note(int shard, Status s) {
  ShardState& st = state_[static_cast<size_t>(shard)];
  if (s.code() == Status::Code::kUnavailable) {
    if (!st.down.exchange(true)) {
      kLog.Warn("store shard unreachable: its transactions wait, the other shards go on",
                {{"shard", std::to_string(shard)}, {"error", s.message()}});
    }
    return Status::Unavailable("store shard " + std::to_string(shard) + ": " + s.message());
  }
  if (s.ok() && st.down.exchange(false)) {
    kLog.Info("store shard answers again", {{"shard", std::to_string(shard)}});
  }
  return s;
}

namespace {
Status StatusOf(const Status& s) { return s; }
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.status();
}
}  // namespace

template <typename Out, typename Call>
Out ShardedStore::Routed(const std::string& gid, Call call) {
  auto shard = Route(gid);
  if (!shard.ok()) return shard.status();
  Out out = call(*shards_[static_cast<size_t>(*shard)].transactions);
  Status noted = Note(*shard, StatusOf(out));
  if (!noted.ok()) return noted;
  return out;
}

Result<core::CreateResult> ShardedStore::Create(const core::Transaction& tx,
                                                const std::string& owner, Duration lease) {
  return Routed<Result<core::CreateResult>>(
      tx.gid, [&](core::TransactionStore& store) { return store.Create(tx, owner, lease); });
}

Result<core::Transaction> ShardedStore::Load(const std::string& gid, bool with_log) {
  return Routed<Result<core::Transaction>>(
      gid, [&](core::TransactionStore& store) { return store.Load(gid, with_log); });
}

Status ShardedStore::AddBranch(const std::string& gid, const std::vector<core::BranchOp>& ops) {
  return Routed<Status>(gid,
                        [&](core::TransactionStore& store) { return store.AddBranch(gid, ops); });
}

Status ShardedStore::MarkSubmitted(const std::string& gid, core::TimePoint now) {
  return Routed<Status>(
      gid, [&](core::TransactionStore& store) { return store.MarkSubmitted(gid, now); });
}

Status ShardedStore::Transition(const std::string& gid, core::TxStatus from, core::TxStatus to,
                                const std::string& reason, core::TimePoint now,
                                const std::vector<core::BranchOp>& ops, const core::Fence* fence) {
  return Routed<Status>(gid, [&](core::TransactionStore& store) {
    return store.Transition(gid, from, to, reason, now, ops, fence);
  });
}

Status ShardedStore::RecordOps(const std::string& gid, const std::vector<core::BranchOp>& ops,
                               core::TimePoint now, const core::Fence& fence) {
  return Routed<Status>(
      gid, [&](core::TransactionStore& store) { return store.RecordOps(gid, ops, now, fence); });
}

Status ShardedStore::SetAttention(const std::string& gid, const std::string& attention,
                                  const core::Fence* fence) {
  return Routed<Status>(gid, [&](core::TransactionStore& store) {
    return store.SetAttention(gid, attention, fence);
  });
}

Status ShardedStore::Reschedule(const std::string& gid, const std::string& owner,
                                core::TimePoint next_attempt_at) {
  return Routed<Status>(gid, [&](core::TransactionStore& store) {
    return store.Reschedule(gid, owner, next_attempt_at);
  });
}

Status ShardedStore::MakeDue(const std::string& gid, core::TimePoint now) {
  return Routed<Status>(gid,
                        [&](core::TransactionStore& store) { return store.MakeDue(gid, now); });
}

Status ShardedStore::Force(const std::string& gid, core::TxStatus from, core::TxStatus to,
                           const std::string& reason, const std::string& actor,
                           core::TimePoint now) {
  return Routed<Status>(gid, [&](core::TransactionStore& store) {
    return store.Force(gid, from, to, reason, actor, now);
  });
}

Result<bool> ShardedStore::TryLease(const std::string& gid, const std::string& owner,
                                    Duration lease) {
  return Routed<Result<bool>>(
      gid, [&](core::TransactionStore& store) { return store.TryLease(gid, owner, lease); });
}

Result<std::vector<std::string>> ShardedStore::ClaimDue(const std::string& owner,
                                                        core::TimePoint now, Duration lease,
                                                        int limit) {
  const size_t n = shards_.size();
  const size_t first = static_cast<size_t>(next_claim_.fetch_add(1) % n);
  std::vector<std::string> out;
  int asked = 0, failed = 0;
  Status first_error;
  for (size_t k = 0; k < n && static_cast<int>(out.size()) < limit; ++k) {
    const int shard = static_cast<int>((first + k) % n);
    if (!Ready(shard)) continue;
    ++asked;
    auto claimed = shards_[static_cast<size_t>(shard)].transactions->ClaimDue(
        owner, now, lease, limit - static_cast<int>(out.size()));
    Status noted = Note(shard, claimed.status());
    if (!noted.ok()) {
      if (failed++ == 0) first_error = noted;
      continue;
    }
    out.insert(out.end(), claimed->begin(), claimed->end());
    CatchUpVersions(shard);
  }
  if (asked == 0) return Status::Unavailable("no store shard is ready yet");
  if (failed == asked) return first_error;
  return out;
}

Status ShardedStore::ReleaseLeases(const std::string& node) {
  int asked = 0, failed = 0;
  Status first_error;
  for (size_t i = 0; i < shards_.size(); ++i) {
    const int shard = static_cast<int>(i);
    if (!Ready(shard)) continue;
    ++asked;
    Status s = Note(shard, shards_[i].transactions->ReleaseLeases(node));
    if (!s.ok() && failed++ == 0) first_error = s;
  }
  if (asked > 0 && failed == asked) return first_error;
  return Status::Ok();
}

Result<core::ListPage> ShardedStore::List(const core::ListFilter& filter) {
  core::ListPage page;
  int answered = 0;
  Status first_error = Status::Unavailable("no store shard is ready yet");
  for (size_t i = 0; i < shards_.size(); ++i) {
    const int shard = static_cast<int>(i);
    if (!Ready(shard)) {
      page.unreachable_shards.push_back(shard);
      continue;
    }
    // Each shard's first `limit` after the cursor: the merged first `limit` are among them.
    auto part = shards_[i].transactions->List(filter);
    Status s = Note(shard, part.status());
    if (!s.ok()) {
      if (answered == 0) first_error = s;
      page.unreachable_shards.push_back(shard);
      continue;
    }
    ++answered;
    for (core::Transaction& tx : part->transactions) page.transactions.push_back(std::move(tx));
  }
  if (answered == 0) return first_error;
  std::sort(page.transactions.begin(), page.transactions.end(),
            [](const core::Transaction& a, const core::Transaction& b) { return a.gid < b.gid; });
  if (static_cast<int>(page.transactions.size()) > filter.limit) {
    page.transactions.resize(static_cast<size_t>(filter.limit));
  }
  return page;
}

Result<core::StatusCounts> ShardedStore::CountByStatus() {
  core::StatusCounts counts;
  int answered = 0;
  Status first_error = Status::Unavailable("no store shard is ready yet");
  for (size_t i = 0; i < shards_.size(); ++i) {
    const int shard = static_cast<int>(i);
    if (!Ready(shard)) {
      counts.unreachable_shards.push_back(shard);
      continue;
    }
    auto part = shards_[i].transactions->CountByStatus();
    Status s = Note(shard, part.status());
    if (!s.ok()) {
      if (answered == 0) first_error = s;
      counts.unreachable_shards.push_back(shard);
      continue;
    }
    ++answered;
    for (const auto& [status, n] : part->by_status) counts.by_status[status] += n;
  }
  if (answered == 0) return first_error;
  return counts;
}

Status ShardedStore::SaveSagaVersion(const std::string& name, const std::string& version,
                                     const std::string& file, const std::string& text) {
  int saved = 0;
  Status first_error = Status::Unavailable("no store shard is ready yet");
  std::vector<int> missed;
  for (size_t i = 0; i < shards_.size(); ++i) {
    const int shard = static_cast<int>(i);
    if (shards_[i].versions == nullptr) continue;
    Status s = Ready(shard)
                   ? Note(shard, shards_[i].versions->SaveSagaVersion(name, version, file, text))
                   : Status::Unavailable("not ready");
    if (s.ok()) {
      ++saved;
      continue;
    }
    if (saved == 0 && missed.empty()) first_error = s;
    missed.push_back(shard);
  }
  if (saved == 0) return first_error;
  // A shard that missed it gets it when it answers again (CatchUpVersions): until then it can
  // hold no transaction of this version, since it accepts none.
  MutexLock lock(versions_mu_);
  for (int shard : missed) {
    pending_versions_[static_cast<size_t>(shard)].push_back({name, version, file, text});
  }
  return Status::Ok();
}

void ShardedStore::CatchUpVersions(int shard) {
  std::vector<PendingVersion> pending;
  {
    MutexLock lock(versions_mu_);
    pending.swap(pending_versions_[static_cast<size_t>(shard)]);
  }
  if (pending.empty()) return;
  std::vector<PendingVersion> failed;
  for (PendingVersion& v : pending) {
    if (!shards_[static_cast<size_t>(shard)]
             .versions->SaveSagaVersion(v.name, v.version, v.file, v.text)
             .ok()) {
      failed.push_back(std::move(v));
    }
  }
  MutexLock lock(versions_mu_);
  auto& left = pending_versions_[static_cast<size_t>(shard)];
  left.insert(left.end(), std::make_move_iterator(failed.begin()),
              std::make_move_iterator(failed.end()));
}

Result<std::vector<saga::StoredSagaVersion>> ShardedStore::ListSagaVersions(
    const std::string& name) {
  std::map<std::string, saga::StoredSagaVersion> merged;  // by version
  int answered = 0;
  Status first_error = Status::Unavailable("no store shard is ready yet");
  for (size_t i = 0; i < shards_.size(); ++i) {
    const int shard = static_cast<int>(i);
    if (shards_[i].versions == nullptr || !Ready(shard)) continue;
    auto part = shards_[i].versions->ListSagaVersions(name);
    Status s = Note(shard, part.status());
    if (!s.ok()) {
      if (answered == 0) first_error = s;
      continue;
    }
    ++answered;
    for (saga::StoredSagaVersion& v : *part) {
      auto [it, inserted] = merged.try_emplace(v.version, v);
      if (inserted) continue;
      it->second.unfinished += v.unfinished;
      it->second.loaded_at = std::min(it->second.loaded_at, v.loaded_at);
    }
  }
  if (answered == 0) return first_error;
  std::vector<saga::StoredSagaVersion> out;
  for (auto& [version, v] : merged) out.push_back(std::move(v));
  // Newest first, as one store lists them.
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.loaded_at != b.loaded_at ? a.loaded_at > b.loaded_at : a.version < b.version;
  });
  return out;
}

Result<std::optional<saga::StoredSagaVersion>> ShardedStore::FindSagaVersion(
    const std::string& name, const std::string& version) {
  std::optional<saga::StoredSagaVersion> found;
  int answered = 0;
  Status first_error = Status::Unavailable("no store shard is ready yet");
  for (size_t i = 0; i < shards_.size(); ++i) {
    const int shard = static_cast<int>(i);
    if (shards_[i].versions == nullptr || !Ready(shard)) continue;
    auto part = shards_[i].versions->FindSagaVersion(name, version);
    Status s = Note(shard, part.status());
    if (!s.ok()) {
      if (answered == 0) first_error = s;
      continue;
    }
    ++answered;
    if (!*part) continue;
    if (!found) {
      found = std::move(*part);
    } else {
      found->unfinished += (*part)->unfinished;
      found->loaded_at = std::min(found->loaded_at, (*part)->loaded_at);
    }
  }
  if (answered == 0) return first_error;
  return found;
}

}  // namespace treaty::store
