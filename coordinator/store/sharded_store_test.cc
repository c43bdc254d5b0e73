// The slot function and map (slot_map.h) and the routing store (sharded_store.h) over two
// in-memory shards: where each gid lives, what a shard's outage stops and what it does not,
// and lists that page exactly across shards.

#include "coordinator/store/sharded_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "coordinator/core/testing/in_memory_store.h"

namespace treaty::store {
namespace {

using core::Transaction;
using core::TxStatus;
using core::testing::InMemoryStore;
using std::chrono::seconds;

TEST(SlotMapTest, SlotsAreRedisClusterSlots) {
  EXPECT_EQ(Crc16("123456789"), 0x31C3);  // CRC16/XMODEM's check value
  // CLUSTER KEYSLOT of these keys in Redis Cluster.
  EXPECT_EQ(SlotOf("foo"), 12182);
  EXPECT_EQ(SlotOf("bar"), 5061);
  EXPECT_EQ(SlotOf(""), 0);
}

TEST(SlotMapTest, EvenMapsSplitTheSlotsIntoContiguousRanges) {
  EXPECT_EQ(SlotMap::Even(1).Text(), "0-16383:0");
  EXPECT_EQ(SlotMap::Even(2).Text(), "0-8191:0,8192-16383:1");
  EXPECT_EQ(SlotMap::Even(3).Text(), "0-5460:0,5461-10921:1,10922-16383:2");
  EXPECT_EQ(SlotMap::Even(3).RangesOf(1), "5461-10921");
  EXPECT_EQ(SlotMap::Even(2).ShardOfSlot(8191), 0);
  EXPECT_EQ(SlotMap::Even(2).ShardOfSlot(8192), 1);
  EXPECT_EQ(SlotMap::Even(2).ShardOf("foo"), 1);
  EXPECT_EQ(SlotMap::Even(2).ShardOf("bar"), 0);
}

TEST(SlotMapTest, TextRoundTripsAndBadTextIsRefused) {
  for (int n : {1, 2, 3, 7, 16384}) {
    auto parsed = SlotMap::Parse(SlotMap::Even(n).Text());
    ASSERT_TRUE(parsed.ok()) << parsed.status().message();
    EXPECT_TRUE(*parsed == SlotMap::Even(n));
    EXPECT_EQ(parsed->shard_count(), n);
  }
  auto moved = SlotMap::Parse("0-99:1,100-8191:0,8192-16383:1");
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved->RangesOf(1), "0-99,8192-16383");
  EXPECT_FALSE(*moved == SlotMap::Even(2));
  for (const char* bad : {"", "0-16383", "0-8191:0", "0-8191:0,8191-16383:1", "0-16383:0,x-y:1",
                          "0-16384:0", "0-16383:1"}) {
    EXPECT_FALSE(SlotMap::Parse(bad).ok()) << bad;
  }
}

TEST(SlotMapTest, GeneratedGidsSpreadEvenlyOverShards) {
  std::vector<int> per_shard(4);
  const SlotMap map = SlotMap::Even(4);
  for (int i = 0; i < 20000; ++i) ++per_shard[map.ShardOf(core::RandomIdGenerator().NewGid())];
  for (int n : per_shard) {
    EXPECT_GT(n, 4500);
    EXPECT_LT(n, 5500);
  }
}

Transaction Tx(const std::string& gid) {
  Transaction tx;
  tx.gid = gid;
  tx.mode = core::Mode::kSaga;
  tx.submitted = true;
  tx.ops = {core::BranchOp{.branch_id = "x", .op = "action"}};
  return tx;
}

class ShardedStoreTest : public ::testing::Test {
 protected:
  ShardedStoreTest()
      : store_({StoreShard{&shard0_, nullptr}, StoreShard{&shard1_, nullptr}}, SlotMap::Even(2)) {
    store_.SetReady(0);
    store_.SetReady(1);
  }

  // `n` gids on each shard.
  void CreateOnEach(int n) {
    int on[2] = {0, 0};
    for (int i = 0; on[0] < n || on[1] < n; ++i) {
      std::string gid = "g" + std::to_string(i);
      int shard = store_.ShardOf(gid);
      if (on[shard] == n) continue;
      ++on[shard];
      ASSERT_TRUE(store_.Create(Tx(gid), "", seconds(0)).ok());
      gids_[shard].push_back(gid);
    }
  }

  InMemoryStore shard0_, shard1_;
  ShardedStore store_;
  std::vector<std::string> gids_[2];
};

TEST_F(ShardedStoreTest, EachTransactionLivesOnTheShardOfItsSlotOnly) {
  CreateOnEach(5);
  for (int shard : {0, 1}) {
    InMemoryStore& mine = shard == 0 ? shard0_ : shard1_;
    InMemoryStore& other = shard == 0 ? shard1_ : shard0_;
    for (const std::string& gid : gids_[shard]) {
      EXPECT_TRUE(mine.Load(gid, false).ok()) << gid;
      EXPECT_EQ(other.Load(gid, false).status().code(), Status::Code::kNotFound) << gid;
      EXPECT_EQ(store_.Load(gid, false).value().gid, gid);
    }
  }
}

TEST_F(ShardedStoreTest, AShardsOutageFailsOnlyItsOwnTransactionsAndNamesIt) {
  CreateOnEach(3);
  shard1_.SetUnavailable(true);
  for (const std::string& gid : gids_[0]) {
    EXPECT_TRUE(store_.MakeDue(gid, core::TimePoint{}).ok());
  }
  for (const std::string& gid : gids_[1]) {
    Status s = store_.MakeDue(gid, core::TimePoint{});
    EXPECT_EQ(s.code(), Status::Code::kUnavailable);
    EXPECT_NE(s.message().find("store shard 1"), std::string::npos) << s.message();
  }
  // Claims go on from the live shard, whichever shard a call starts with.
  std::set<std::string> claimed;
  for (int i = 0; i < 4; ++i) {
    auto c = store_.ClaimDue("node-a", core::TimePoint::max(), seconds(30), 100);
    ASSERT_TRUE(c.ok()) << c.status().message();
    claimed.insert(c->begin(), c->end());
  }
  EXPECT_EQ(claimed, std::set<std::string>(gids_[0].begin(), gids_[0].end()));
  // Only when every shard fails does the claim fail.
  shard0_.SetUnavailable(true);
  EXPECT_EQ(store_.ClaimDue("node-a", core::TimePoint::max(), seconds(30), 100).status().code(),
            Status::Code::kUnavailable);
  shard0_.SetUnavailable(false);
  shard1_.SetUnavailable(false);
  auto c = store_.ClaimDue("node-a", core::TimePoint::max(), seconds(30), 100);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(std::set<std::string>(c->begin(), c->end()),
            std::set<std::string>(gids_[1].begin(), gids_[1].end()));
}

TEST_F(ShardedStoreTest, ClaimsTakeFromEveryShardWithinTheLimit) {
  CreateOnEach(10);
  std::set<std::string> claimed;
  int from_shard1_first_call = 0;
  for (int call = 0; call < 20 && claimed.size() < 20; ++call) {
    auto c = store_.ClaimDue("node-a", core::TimePoint::max(), seconds(30), 3);
    ASSERT_TRUE(c.ok());
    EXPECT_LE(c->size(), 3u);
    for (const std::string& gid : *c) {
      EXPECT_TRUE(claimed.insert(gid).second) << gid << " claimed twice";
      if (call == 1 && store_.ShardOf(gid) == 1) ++from_shard1_first_call;
    }
  }
  EXPECT_EQ(claimed.size(), 20u);
  EXPECT_GT(from_shard1_first_call, 0) << "the second call starts with the other shard";
}

TEST_F(ShardedStoreTest, ListsPageTheWholeStoreInGidOrderAndNameAShardThatIsDown) {
  CreateOnEach(7);
  std::vector<std::string> all = gids_[0];
  all.insert(all.end(), gids_[1].begin(), gids_[1].end());
  std::sort(all.begin(), all.end());

  std::vector<std::string> paged;
  std::string after;
  for (;;) {
    auto page = store_.List({.after_gid = after, .limit = 3});
    ASSERT_TRUE(page.ok());
    EXPECT_TRUE(page->unreachable_shards.empty());
    for (const Transaction& tx : page->transactions) paged.push_back(tx.gid);
    if (page->transactions.size() < 3) break;
    after = page->transactions.back().gid;
  }
  EXPECT_EQ(paged, all);

  auto counts = store_.CountByStatus();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->by_status.at(TxStatus::kActive), 14);

  shard1_.SetUnavailable(true);
  auto page = store_.List({.limit = 100});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->unreachable_shards, std::vector<int>{1});
  EXPECT_EQ(page->transactions.size(), 7u);
  counts = store_.CountByStatus();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->by_status.at(TxStatus::kActive), 7);
  EXPECT_EQ(counts->unreachable_shards, std::vector<int>{1});
  shard0_.SetUnavailable(true);
  EXPECT_EQ(store_.List({}).status().code(), Status::Code::kUnavailable);
}

// Saga versions in memory, with a switch for an outage (the versions' part of a shard).
class FakeVersions : public saga::SagaVersionStore {
 public:
  Status SaveSagaVersion(const std::string& name, const std::string& version,
                         const std::string& file, const std::string& text) override {
    if (down) return Status::Unavailable("down (test)");
    kept.try_emplace(name + "@" + version, saga::StoredSagaVersion{.name = name,
                                                                   .version = version,
                                                                   .file = file,
                                                                   .text = text,
                                                                   .unfinished = unfinished});
    return Status::Ok();
  }
  Result<std::optional<saga::StoredSagaVersion>> FindSagaVersion(
      const std::string& name, const std::string& version) override {
    if (down) return Status::Unavailable("down (test)");
    auto it = kept.find(name + "@" + version);
    if (it == kept.end()) return std::optional<saga::StoredSagaVersion>();
    return std::optional<saga::StoredSagaVersion>(it->second);
  }
  Result<std::vector<saga::StoredSagaVersion>> ListSagaVersions(const std::string&) override {
    if (down) return Status::Unavailable("down (test)");
    std::vector<saga::StoredSagaVersion> out;
    for (const auto& [key, v] : kept) out.push_back(v);
    return out;
  }
  bool down = false;
  int64_t unfinished = 0;  // what each kept version reports
  std::map<std::string, saga::StoredSagaVersion> kept;
};

TEST(ShardedStoreVersionsTest, VersionsAreKeptInEveryShardAndAMissedOneCatchesUp) {
  InMemoryStore a, b;
  FakeVersions va, vb;
  va.unfinished = 2;
  vb.unfinished = 3;
  ShardedStore store({StoreShard{&a, &va}, StoreShard{&b, &vb}}, SlotMap::Even(2));
  store.SetReady(0);
  store.SetReady(1);
  vb.down = true;
  ASSERT_TRUE(store.SaveSagaVersion("order", "v1", "order.yaml", "text").ok())
      << "saved on the shard that answers";
  EXPECT_EQ(va.kept.size(), 1u);
  EXPECT_TRUE(vb.kept.empty());
  auto found = store.FindSagaVersion("order", "v1");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->unfinished, 2);
  // Back: the next claim that reaches it writes what it missed; counts are summed.
  vb.down = false;
  ASSERT_TRUE(store.ClaimDue("node-a", core::TimePoint::max(), seconds(30), 10).ok());
  ASSERT_TRUE(store.ClaimDue("node-a", core::TimePoint::max(), seconds(30), 10).ok());
  EXPECT_EQ(vb.kept.count("order@v1"), 1u);
  found = store.FindSagaVersion("order", "v1");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->unfinished, 5);
  auto listed = store.ListSagaVersions("order");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().unfinished, 5);
  va.down = vb.down = true;
  EXPECT_EQ(store.SaveSagaVersion("order", "v2", "order.yaml", "t2").code(),
            Status::Code::kUnavailable);
}

TEST(ShardedStoreReadinessTest, AShardNotReadyIsNotUsed) {
  InMemoryStore a, b;
  ShardedStore store({StoreShard{&a, nullptr}, StoreShard{&b, nullptr}}, SlotMap::Even(2));
  store.SetReady(0);
  ASSERT_EQ(store.ShardOf("foo"), 1);
  Status s = store.Create(Tx("foo"), "", seconds(0)).status();
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_NE(s.message().find("not ready"), std::string::npos);
  EXPECT_EQ(b.Calls("Create"), 0);
  EXPECT_TRUE(store.Create(Tx("bar"), "", seconds(0)).ok());
  EXPECT_EQ(store.List({}).value().unreachable_shards, std::vector<int>{1});
}

}  // namespace
}  // namespace treaty::store
