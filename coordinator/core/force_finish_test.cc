// An operator's force-finish, through the real TransactionService over the in-memory store: what
// it may end and how, what it records, and that no coordinator drives the transaction after.

#include <gtest/gtest.h>

#include "coordinator/core/testing/fakes.h"
#include "coordinator/core/testing/in_memory_store.h"
#include "coordinator/core/transaction_service.h"
#include "coordinator/core/twopc_processor.h"

namespace treaty::core {
namespace {

using std::chrono::milliseconds;
using testing::ScriptedTransport;

BranchSpec Branch(const std::string& id) {
  return BranchSpec{.id = id,
                    .urls = {{"prepare", "http://p/" + id + "/prepare"},
                             {"commit", "http://p/" + id + "/commit"},
                             {"abort", "http://p/" + id + "/abort"}}};
}

class ForceFinishTest : public ::testing::Test {
 protected:
  ForceFinishTest()
      : driver_(DriverOptions{.owner = "node-a",
                              .retry = RetryPolicy{milliseconds(200), milliseconds(5000), 2, 0}},
                store_, transport_, clock_, ids_, crash_, {&processor_}),
        service_(store_, driver_, clock_, ids_, crash_, std::chrono::seconds(10)) {}

  // A 2PC transaction whose commit keeps failing at b: stuck committing.
  std::string StuckCommitting() {
    transport_.Then("b", "commit", ScriptedTransport::Unknown(503, "b is down"), 100);
    BeginRequest req{.gid = "g1", .branches = std::vector<BranchSpec>{Branch("a"), Branch("b")}};
    EXPECT_TRUE(service_.Begin(req).ok());
    EXPECT_TRUE(driver_.DriveNow("g1").ok());
    EXPECT_EQ(Load("g1").status, TxStatus::kCommitting);
    return "g1";
  }
  Transaction Load(const std::string& gid) { return store_.Load(gid, true).value(); }

  testing::InMemoryStore store_;
  ScriptedTransport transport_;
  testing::FakeClock clock_;
  testing::CountingIds ids_;
  testing::RecordingCrashPoints crash_;
  TwoPhaseCommitProcessor processor_;
  TransactionDriver driver_;
  TransactionService service_;
};

TEST_F(ForceFinishTest, AStuckCommitIsForcedCommittedWithWhoAndWhyInTheLogAndNoMoreCalls) {
  std::string gid = StuckCommitting();
  auto preview = service_.Force(gid, TxStatus::kCommitted, "b restored by hand", "ops-alice", true);
  ASSERT_TRUE(preview.ok()) << preview.status().ToString();
  ASSERT_EQ(preview->not_called.size(), 1u);
  EXPECT_EQ(preview->not_called[0].branch_id + "/" + preview->not_called[0].op, "b/commit");
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitting) << "a dry run changes nothing";

  auto forced = service_.Force(gid, TxStatus::kCommitted, "b restored by hand", "ops-alice", false);
  ASSERT_TRUE(forced.ok()) << forced.status().ToString();
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kCommitted);
  EXPECT_EQ(tx.reason, "forced committed by ops-alice: b restored by hand");
  EXPECT_EQ(tx.attention, "");
  EXPECT_EQ(tx.log.back().actor, "ops-alice");
  EXPECT_EQ(tx.log.back().from, TxStatus::kCommitting);
  EXPECT_EQ(tx.log.back().to, TxStatus::kCommitted);

  const size_t calls = transport_.Calls().size();
  clock_.Advance(std::chrono::minutes(5));
  store_.ExpireLeases();
  auto due = store_.ClaimDue("node-b", clock_.Now(), std::chrono::seconds(30), 10);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty()) << "no coordinator claims it again";
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(transport_.Calls().size(), calls) << "nothing is called after the force";
}

TEST_F(ForceFinishTest, WhatCouldContradictTheDecisionIsRefused) {
  std::string gid = StuckCommitting();
  auto aborted = service_.Force(gid, TxStatus::kAborted, "give up", "ops-alice", false);
  EXPECT_EQ(aborted.status().code(), Status::Code::kConflict);
  EXPECT_EQ(aborted.status().message(),
            "transaction g1 cannot be forced aborted: commit was decided (it is committing): "
            "participants may have committed already; force it committed instead");

  // Begun, never decided: committed is refused, aborted allowed.
  BeginRequest open{.gid = "g2", .mode = Mode::k2pc};
  ASSERT_TRUE(service_.Begin(open).ok());
  EXPECT_EQ(service_.Force("g2", TxStatus::kCommitted, "x", "ops", false).status().code(),
            Status::Code::kConflict);
  ASSERT_TRUE(service_.Force("g2", TxStatus::kAborted, "client gone", "ops", false).ok());
  EXPECT_EQ(Load("g2").status, TxStatus::kAborted);
  EXPECT_EQ(service_.Force("g2", TxStatus::kAborted, "again", "ops", false).status().message(),
            "transaction g2 cannot be forced aborted: it is aborted already");

  EXPECT_EQ(service_.Force(gid, TxStatus::kActive, "x", "ops", false).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(service_.Force(gid, TxStatus::kCommitted, "", "ops", false).status().field(), "reason");
  EXPECT_EQ(service_.Force("nope", TxStatus::kCommitted, "x", "ops", false).status().code(),
            Status::Code::kNotFound);
}

TEST_F(ForceFinishTest, ADriveThatHeldTheLeaseLosesItsFence) {
  std::string gid = StuckCommitting();
  // node-a holds a lease on g1 as if mid-drive; the force takes it away.
  ASSERT_TRUE(store_.TryLease(gid, "node-a", std::chrono::seconds(30)).value());
  ASSERT_TRUE(service_.Force(gid, TxStatus::kCommitted, "fixed", "ops", false).ok());
  Fence fence{"node-a", std::chrono::seconds(30)};
  EXPECT_EQ(store_.RecordOps(gid, {}, clock_.Now(), fence).code(), Status::Code::kLeaseLost);
}

}  // namespace
}  // namespace treaty::core
