// The saga processor through the real TransactionService and TransactionDriver, over the
// in-memory store, a scripted transport and a fake clock.

#include "coordinator/saga/saga_processor.h"

#include <gtest/gtest.h>

#include "coordinator/saga/saga_test_fixture.h"

namespace treaty::core {
namespace {

using std::chrono::milliseconds;
using testing::ScriptedTransport;
using Strings = std::vector<std::string>;

// A transport that notes, at each call, what the store says of every op: what a coordinator
// taking over after a crash at that moment would see.
class StoreWatchingTransport : public BranchTransport {
 public:
  StoreWatchingTransport(BranchTransport& inner, TransactionStore& store)
      : inner_(inner), store_(store) {}
  std::vector<BranchReply> CallAll(const std::vector<BranchCall>& calls) override {
    for (const BranchCall& c : calls) {
      auto tx = store_.Load(c.gid, false);
      std::string seen = c.branch_id + "/" + c.op + " sees";
      for (const BranchOp& op : tx->ops) {
        if (op.status == OpStatus::kSucceeded) seen += " " + op.branch_id + "/" + op.op;
      }
      seen_.push_back(seen);
    }
    return inner_.CallAll(calls);
  }
  Strings seen_;

 private:
  BranchTransport& inner_;
  TransactionStore& store_;
};

TEST_F(SagaTest, AStepRunsOnlyOnceTheStepItNeedsIsStoredAsDone) {
  // Were b called while the store still showed a as not done, a crash then would leave b
  // uncompensated: compensation targets the steps whose prerequisites are stored as done.
  StoreWatchingTransport watching(transport_, store_);
  TransactionDriver driver(DriverOptions{.owner = "node-b"}, store_, watching, clock_, ids_, crash_,
                           {&saga_});
  std::string gid = Start({Step("a"), Step("b", {"a"}), Step("c", {"b"})});
  store_.ExpireLeases();  // node-b takes over what node-a began
  ASSERT_TRUE(driver.DriveNow(gid).ok());
  EXPECT_EQ(watching.seen_, (Strings{"a/action sees", "b/action sees a/action",
                                     "c/action sees a/action b/action"}));
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitted);
}

TEST_F(SagaTest, RunsTheDagInDependencyOrder) {
  // a and b have no dependencies; c needs both; d needs c.
  std::string gid = Start({Step("a"), Step("b"), Step("c", {"a", "b"}), Step("d", {"c"})});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(transport_.Calls(), (Strings{"a/action", "b/action", "c/action", "d/action"}));
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitted);
  EXPECT_EQ(Load(gid).reason, "every step succeeded");
}

TEST_F(SagaTest, ARefusalCompensatesWhatRanInReverseOrder) {
  transport_.Then("d", "action", ScriptedTransport::Refused("card declined"));
  std::string gid = Start({Step("a"), Step("b", {"a"}), Step("c", {"b"}), Step("d", {"c"})});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kAborted);
  EXPECT_EQ(tx.reason, "step d refused: HTTP 409: card declined");
  EXPECT_EQ(transport_.Calls(), (Strings{"a/action", "b/action", "c/action", "d/action",
                                         "c/compensate", "b/compensate", "a/compensate"}))
      << "d's refused action changed nothing: it gets no compensation";
}

TEST_F(SagaTest, ARefusalInTheMiddleOfADagCompensatesEveryCompensableStepInReverseOrder) {
  // a -> pay -> ship; b runs beside a. pay refuses: ship never starts, but it is compensated all
  // the same (first, as it depends on a and b through pay): a coordinator that lost its lease
  // could still send ship's action late, and the barrier refuses it once its compensation came.
  transport_.Then("pay", "action", ScriptedTransport::Refused("declined"));
  std::string gid = Start({Step("a"), Step("b"), Step("pay", {"a", "b"}), Step("ship", {"pay"})});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Strings calls = transport_.Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "ship/action"), 0);
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "pay/compensate"), 0)
      << "pay's refused action changed nothing";
  EXPECT_EQ(calls, (Strings{"a/action", "b/action", "pay/action", "ship/compensate", "a/compensate",
                            "b/compensate"}));
  EXPECT_EQ(Load(gid).status, TxStatus::kAborted);
}

TEST_F(SagaTest, AnUnknownStepWaitsForItsBackoffWhileOthersGoOn) {
  transport_.Then("a", "action", ScriptedTransport::Unknown());
  std::string gid = Start({Step("a"), Step("b"), Step("c", {"b"})});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(transport_.Calls(), (Strings{"a/action", "b/action", "c/action"}))
      << "a is not called again until its backoff ends";
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kActive);
  EXPECT_EQ(tx.next_attempt_at, clock_.Now() + milliseconds(200));
  clock_.Advance(milliseconds(200));
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitted);
}

TEST_F(SagaTest, ForwardOnlyStepsAreRetriedNotCompensated) {
  transport_.Then("notify", "action", ScriptedTransport::Refused("mail server says no"));
  std::string gid = Start({Step("a"), Step("notify", {"a"}, /*compensable=*/false)});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(Load(gid).status, TxStatus::kActive) << "a forward-only refusal does not abort";
  clock_.Advance(Load(gid).next_attempt_at - clock_.Now());
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitted);
}

TEST_F(SagaTest, TheDeadlineCompensates) {
  transport_.Then("b", "action", ScriptedTransport::Unknown(), 100);
  BeginRequest req;
  req.gid = "s2";
  req.mode = Mode::kSaga;
  req.branches = {Step("a"), Step("b", {"a"})};
  req.timeout = milliseconds(300);
  ASSERT_TRUE(service_.Begin(req).ok());
  for (int i = 0; i < 5 && Load("s2").status == TxStatus::kActive; ++i) {
    ASSERT_TRUE(driver_.DriveNow("s2").ok());
    clock_.Advance(Load("s2").next_attempt_at - clock_.Now());
  }
  ASSERT_TRUE(driver_.DriveNow("s2").ok());
  Transaction tx = Load("s2");
  EXPECT_EQ(tx.status, TxStatus::kAborted);
  EXPECT_EQ(tx.reason, "deadline passed before every step succeeded");
  Strings calls = transport_.Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "b/compensate"), 1) << "b may have run";
  EXPECT_EQ(calls.back(), "a/compensate") << "a is undone after b";
}

TEST_F(SagaTest, TheGraphIsChecked) {
  EXPECT_EQ(CheckSagaGraph({{"a", {"x"}}}).message(), "step a: after names unknown step x");
  EXPECT_EQ(CheckSagaGraph({{"a", {"c"}}, {"b", {"a"}}, {"c", {"b"}}}).message(),
            "steps form a cycle: a -> c -> b -> a");
  EXPECT_TRUE(CheckSagaGraph({{"a", {}}, {"b", {"a"}}}).ok());
  BeginRequest req;
  req.gid = "s3";
  req.mode = Mode::kSaga;
  req.branches = {Step("a", {"a"})};
  EXPECT_EQ(service_.Begin(req).status().message(), "steps form a cycle: a -> a");
}

TEST_F(SagaTest, AStuckForwardStepCanBeForcedCommittedButNotOnceCompensationBegan) {
  transport_.Then("notify", "action", ScriptedTransport::Unknown(), 100);
  std::string gid = Start({Step("a"), Step("notify", {"a"}, /*compensable=*/false)});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  auto forced = service_.Force(gid, TxStatus::kCommitted, "mail sent by hand", "ops", false);
  ASSERT_TRUE(forced.ok()) << forced.status().ToString();
  ASSERT_EQ(forced->not_called.size(), 1u);
  EXPECT_EQ(forced->not_called[0].branch_id, "notify");
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitted);

  transport_.Then("pay", "action", ScriptedTransport::Refused("declined"));
  transport_.Then("a", "compensate", ScriptedTransport::Unknown(), 100);
  BeginRequest req{.gid = "s2",
                   .mode = Mode::kSaga,
                   .branches = std::vector<BranchSpec>{Step("a"), Step("pay", {"a"})}};
  ASSERT_TRUE(service_.Begin(req).ok());
  ASSERT_TRUE(driver_.DriveNow("s2").ok());
  ASSERT_EQ(Load("s2").status, TxStatus::kAborting);
  EXPECT_EQ(service_.Force("s2", TxStatus::kCommitted, "x", "ops", false).status().code(),
            Status::Code::kConflict);
  ASSERT_TRUE(service_.Force("s2", TxStatus::kAborted, "refunded by hand", "ops", false).ok());
  EXPECT_EQ(Load("s2").status, TxStatus::kAborted);
}

}  // namespace
}  // namespace treaty::core
