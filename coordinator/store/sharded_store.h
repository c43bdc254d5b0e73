#pragma once

// The store split by gid over several shards (store.shards, docs/scaling.md): a TransactionStore
// and SagaVersionStore that holds one store per shard (PgTransactionStore in treatyd, in-memory
// stores in unit tests) and routes each call:
//   - a call about one gid goes to the shard that owns the gid's slot (slot_map.h), and only
//     there: a shard's outage fails only its own transactions' calls (Unavailable, naming the
//     shard), the others go on;
//   - ClaimDue claims from each shard in turn (each shard's own leases and clock), starting
//     with a different shard each call so that none starves another; a shard that fails is
//     skipped, and the call fails only when every shard asked failed;
//   - ReleaseLeases goes to every shard (a shard it cannot reach keeps its leases until they
//     expire);
//   - List and CountByStatus ask every shard and merge: the list in gid order (each shard lists
//     its first `limit` gids after the cursor; the merged first `limit` are the first `limit`
//     of the whole store, so a gid cursor pages the whole store exactly), the counts summed.
//     Shards that did not answer are named in unreachable_shards; the call fails only when none
//     answered;
//   - saga versions are kept in every shard (each counts its own unfinished transactions of a
//     version): Save writes to each, and a shard that misses a save (down) gets it when a claim
//     reaches it again; Find and List merge, summing the counts.
//
// A shard is used only once it is ready (its schema migrated and its stored slot map checked:
// treatyd's startup calls SetReady); calls for a gid on a shard not ready are Unavailable.
// Thread-safe when the shard stores are.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "coordinator/core/store.h"
#include "coordinator/saga/saga_versions.h"
#include "coordinator/store/slot_map.h"

namespace treaty::store {

struct StoreShard {
  core::TransactionStore* transactions = nullptr;
  saga::SagaVersionStore* versions = nullptr;  // may be null: no saga versions there
};

class ShardedStore : public core::TransactionStore, public saga::SagaVersionStore {
 public:
  // One store per shard of `map` (shards.size() == map.shard_count()); none ready yet.
  ShardedStore(std::vector<StoreShard> shards, SlotMap map);
  ~ShardedStore() override;

  // Shard `shard` may be used from now on.
  void SetReady(int shard);
  bool Ready(int shard) const;
  int shard_count() const { return static_cast<int>(shards_.size()); }
  const SlotMap& slot_map() const { return map_; }
  // The shard that holds `gid`.
  int ShardOf(const std::string& gid) const { return map_.ShardOf(gid); }

  Result<core::CreateResult> Create(const core::Transaction& tx, const std::string& owner,
                                    Duration lease) override;
  Result<core::Transaction> Load(const std::string& gid, bool with_log) override;
  Status AddBranch(const std::string& gid, const std::vector<core::BranchOp>& ops) override;
  Status MarkSubmitted(const std::string& gid, core::TimePoint now) override;
  Status Transition(const std::string& gid, core::TxStatus from, core::TxStatus to,
                    const std::string& reason, core::TimePoint now,
                    const std::vector<core::BranchOp>& ops, const core::Fence* fence) override;
  Status RecordOps(const std::string& gid, const std::vector<core::BranchOp>& ops,
                   core::TimePoint now, const core::Fence& fence) override;
  Status SetAttention(const std::string& gid, const std::string& attention,
                      const core::Fence* fence) override;
  Status Reschedule(const std::string& gid, const std::string& owner,
                    core::TimePoint next_attempt_at) override;
  Status MakeDue(const std::string& gid, core::TimePoint now) override;
  Status Force(const std::string& gid, core::TxStatus from, core::TxStatus to,
               const std::string& reason, const std::string& actor, core::TimePoint now) override;
  Result<std::vector<std::string>> ClaimDue(const std::string& owner, core::TimePoint now,
                                            Duration lease, int limit) override;
  Result<bool> TryLease(const std::string& gid, const std::string& owner, Duration lease) override;
  Status ReleaseLeases(const std::string& node) override;
  Result<core::ListPage> List(const core::ListFilter& filter) override;
  Result<core::StatusCounts> CountByStatus() override;

  Status SaveSagaVersion(const std::string& name, const std::string& version,
                         const std::string& file, const std::string& text) override;
  Result<std::optional<saga::StoredSagaVersion>> FindSagaVersion(
      const std::string& name, const std::string& version) override;
  Result<std::vector<saga::StoredSagaVersion>> ListSagaVersions(const std::string& name) override;

 private:
  struct PendingVersion {
    std::string name, version, file, text;
  };
  struct ShardState;

  // The shard of `gid` if it is ready; Unavailable naming it otherwise.
  Result<int> Route(const std::string& gid) const;
  // `call(store)` on the store of `gid`'s shard, its Unavailable naming the shard.
  template <typename Out, typename Call>
  Out Routed(const std::string& gid, Call call);
  // `s` as the answer of shard `shard`: Unavailable names the shard, and the shard's outage is
  // noted (logged once when it starts and once when it ends).
  Status Note(int shard, Status s);
  // Writes the saga versions shard `shard` missed while it was down.
  void CatchUpVersions(int shard);

  std::vector<StoreShard> shards_;
  const SlotMap map_;
  std::unique_ptr<ShardState[]> state_;
  std::atomic<uint64_t> next_claim_{0};
  Mutex versions_mu_;
  // Per shard: the saga versions it has not got yet.
  std::vector<std::vector<PendingVersion>> pending_versions_ GUARDED_BY(versions_mu_);
};

}  // namespace treaty::store
