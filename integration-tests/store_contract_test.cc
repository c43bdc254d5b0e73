// The store's contract for a drive's hold on a transaction (coordinator/core/store.h: Fence), run
// against both implementations: the PostgreSQL store on a throwaway cluster, and the in-memory
// store the core's unit tests use. Leases are the store's: PostgreSQL's clock, or the in-memory
// store's own.

#include <gtest/gtest.h>


#include "coordinator/core/testing/in_memory_store.h"
#include "coordinator/store/pg_store.h"
#include "coordinator/store/pg_transaction_store.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/test_support.h"

namespace treaty::harness {
namespace {

using core::BranchOp;
using core::Fence;
using core::OpStatus;
using core::TxStatus;
using std::chrono::milliseconds;
using std::chrono::seconds;

core::Transaction Saga(const std::string& gid) {
  core::Transaction tx;
  tx.gid = gid;
  tx.mode = core::Mode::kSaga;
  tx.submitted = true;
  tx.created_at = tx.updated_at = tx.next_attempt_at = std::chrono::system_clock::now();
  tx.deadline = tx.created_at + seconds(60);
  for (const char* step : {"x", "y"}) {
    for (const char* op : {"action", "compensate"}) {
      tx.ops.push_back(BranchOp{.branch_id = step, .op = op, .url = "http://p/" + std::string(op)});
    }
  }
  return tx;
}

BranchOp Op(const std::string& branch, const std::string& op, OpStatus status, int attempts) {
  BranchOp o{.branch_id = branch, .op = op};
  o.status = status;
  o.attempts = attempts;
  return o;
}

class StoreContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      store_ = std::make_unique<core::testing::InMemoryStore>();
      return;
    }
    auto pg = PgCluster::Start();
    ASSERT_TRUE(pg.ok()) << pg.status().message();
    pg_ = std::move(*pg);
    ASSERT_OK(pg_->CreateDatabase("treaty"));
    store::PgStore schema(pg_->Url("treaty"), seconds(5));
    ASSERT_OK(schema.Connect());
    ASSERT_TRUE(schema.Migrate().ok());
    store_ = std::make_unique<store::PgTransactionStore>(
        store::PgStoreOptions{.url = pg_->Url("treaty"), .pool_size = 4});
  }
  void TearDown() override {
    store_.reset();
    pg_.reset();
  }

  core::Transaction Load(const std::string& gid) { return store_->Load(gid, false).value(); }
  // When the lease on `gid` ends, as the store keeps it.
  core::TimePoint LeaseUntil(const std::string& gid) {
    if (!pg_) return static_cast<core::testing::InMemoryStore&>(*store_).LeaseUntil(gid);
    auto ms = pg_->QueryValue("treaty",
                              "SELECT (extract(epoch FROM lease_until) * 1000)::bigint FROM "
                              "treaty.transactions WHERE gid = '" + gid + "'");
    return core::TimePoint(milliseconds(std::stoll(ms.value())));
  }
  OpStatus StatusOf(const std::string& gid, const std::string& branch, const std::string& op) {
    return Load(gid).FindOp(branch, op)->status;
  }

  std::unique_ptr<PgCluster> pg_;
  std::unique_ptr<core::TransactionStore> store_;
};

TEST_P(StoreContractTest, OnlyTheLeaseHolderWritesAndEachWriteRenewsItsLease) {
  const Fence a{"node-a", seconds(30)};
  const Fence b{"node-b", seconds(30)};
  ASSERT_TRUE(store_->Create(Saga("c1"), a.owner, a.lease).ok());
  EXPECT_FALSE(store_->TryLease("c1", b.owner, b.lease).value()) << "a's lease is running";
  // Each fenced write renews a's lease to the store's now plus the lease it names: an hour...
  const core::TimePoint created_until = LeaseUntil("c1");
  ASSERT_OK(store_->RecordOps("c1", {}, std::chrono::system_clock::now(),
                              Fence{a.owner, std::chrono::hours(1)}));
  EXPECT_GT(LeaseUntil("c1"), created_until + std::chrono::minutes(59)) << "not renewed";
  EXPECT_FALSE(store_->TryLease("c1", b.owner, b.lease).value()) << "renewed leases still run";
  // ...or 300 ms; then a stops writing: its lease runs out, b takes over, and every write of a
  // is refused.
  ASSERT_OK(store_->RecordOps("c1", {}, std::chrono::system_clock::now(),
                              Fence{a.owner, milliseconds(300)}));
  EXPECT_LT(LeaseUntil("c1"), created_until) << "the renewal did not set the lease it named";
  ASSERT_TRUE(
      WaitUntil([&] { return store_->TryLease("c1", b.owner, b.lease).value(); }, seconds(10)));
  auto now = std::chrono::system_clock::now();
  EXPECT_EQ(store_->RecordOps("c1", {Op("x", "action", OpStatus::kSucceeded, 1)}, now, a).code(),
            Status::Code::kLeaseLost);
  EXPECT_EQ(store_->Transition("c1", TxStatus::kActive, TxStatus::kCommitted, "stale", now, {}, &a)
                .code(),
            Status::Code::kLeaseLost);
  EXPECT_EQ(store_->SetAttention("c1", "stale", &a).code(), Status::Code::kLeaseLost);
  core::Transaction tx = Load("c1");
  EXPECT_EQ(tx.status, TxStatus::kActive);
  EXPECT_EQ(tx.attention, "");
  EXPECT_EQ(tx.FindOp("x", "action")->attempts, 0);
  // b's writes go through; a client's move needs no lease.
  EXPECT_TRUE(store_->RecordOps("c1", {Op("x", "action", OpStatus::kSucceeded, 1)}, now, b).ok());
  EXPECT_TRUE(
      store_->Transition("c1", TxStatus::kActive, TxStatus::kAborting, "client", now, {}, nullptr)
          .ok());
  EXPECT_TRUE(
      store_->Transition("c1", TxStatus::kAborting, TxStatus::kAborted, "done", now, {}, &b).ok());
}

TEST_P(StoreContractTest, ALeaseGivenBackFencesTheDriveThatGaveItBack) {
  const Fence a{"node-a", seconds(30)};
  ASSERT_TRUE(store_->Create(Saga("c3"), a.owner, a.lease).ok());
  // The drive waits for a retry and gives its lease back; a late write of the same drive (or
  // of a paused twin) must not pass the fence.
  ASSERT_TRUE(store_->Reschedule("c3", a.owner, std::chrono::system_clock::now()).ok());
  auto now = std::chrono::system_clock::now();
  EXPECT_EQ(
      store_->Transition("c3", TxStatus::kActive, TxStatus::kAborting, "late", now, {}, &a).code(),
      Status::Code::kLeaseLost);
  EXPECT_EQ(store_->RecordOps("c3", {}, now, a).code(), Status::Code::kLeaseLost);
  EXPECT_EQ(store_->SetAttention("c3", "late", &a).code(), Status::Code::kLeaseLost);
  EXPECT_EQ(Load("c3").status, TxStatus::kActive);
}

TEST_P(StoreContractTest, RecordedOutcomesOnlyMoveForward) {
  const Fence a{"node-a", seconds(30)};
  ASSERT_TRUE(store_->Create(Saga("c2"), a.owner, a.lease).ok());
  auto now = std::chrono::system_clock::now();
  ASSERT_OK(store_->RecordOps(
      "c2", {Op("x", "action", OpStatus::kSucceeded, 2), Op("y", "action", OpStatus::kRefused, 1)},
      now, a));
  // A stale or repeated write says pending for both: neither goes back.
  ASSERT_OK(store_->RecordOps(
      "c2", {Op("x", "action", OpStatus::kPending, 1), Op("y", "action", OpStatus::kPending, 1)},
      now, a));
  EXPECT_EQ(StatusOf("c2", "x", "action"), OpStatus::kSucceeded);
  EXPECT_EQ(StatusOf("c2", "y", "action"), OpStatus::kRefused);
  // A refused op retried with no answer stays refused, but counts its attempts on (its backoff
  // grows with them).
  ASSERT_TRUE(store_->RecordOps("c2", {Op("y", "action", OpStatus::kPending, 4)}, now, a).ok());
  EXPECT_EQ(StatusOf("c2", "y", "action"), OpStatus::kRefused);
  EXPECT_EQ(Load("c2").FindOp("y", "action")->attempts, 4);
  // The same through a transition's recorded ops.
  ASSERT_OK(store_->Transition("c2", TxStatus::kActive, TxStatus::kAborting, "y refused", now,
                               {Op("x", "action", OpStatus::kPending, 3)}, &a));
  EXPECT_EQ(StatusOf("c2", "x", "action"), OpStatus::kSucceeded);
  // A refusal can still turn into success (a compensation that refused, then succeeded).
  ASSERT_OK(store_->RecordOps("c2", {Op("y", "action", OpStatus::kSucceeded, 2)}, now, a));
  EXPECT_EQ(StatusOf("c2", "y", "action"), OpStatus::kSucceeded);
}

INSTANTIATE_TEST_SUITE_P(BothStores, StoreContractTest, ::testing::Values("postgres", "memory"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace treaty::harness
