// The TCC processor through the real TransactionService and TransactionDriver, over the
// in-memory store, a scripted transport and a fake clock.

#include "tcc/tcc_processor.h"

#include <gtest/gtest.h>

#include "coordinator/core/testing/fakes.h"
#include "coordinator/core/testing/in_memory_store.h"
#include "coordinator/core/transaction_service.h"
#include "coordinator/core/twopc_processor.h"

namespace treaty::core {
namespace {

using std::chrono::milliseconds;
using testing::ScriptedTransport;
using Strings = std::vector<std::string>;

BranchSpec Branch(const std::string& id, bool with_try = true) {
  BranchSpec b{
      id,
      {{"confirm", "http://p/" + id + "/confirm"}, {"cancel", "http://p/" + id + "/cancel"}},
      "{}",
      std::nullopt};
  if (with_try) b.urls["try"] = "http://p/" + id + "/try";
  return b;
}

class TccTest : public ::testing::Test {
 protected:
  TccTest()
      : driver_(DriverOptions{.owner = "node-a",
                              .retry = RetryPolicy{milliseconds(200), milliseconds(5000), 2, 0}},
                store_, transport_, clock_, ids_, crash_, {&tcc_, &twopc_}),
        service_(store_, driver_, clock_, ids_, crash_, std::chrono::seconds(10)) {}

  std::string Submit(std::vector<BranchSpec> branches, bool sequential = false) {
    BeginRequest req;
    req.gid = "t1";
    req.mode = Mode::kTcc;
    req.branches = std::move(branches);
    req.sequential = sequential;
    auto r = service_.Begin(req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return "t1";
  }

  Transaction Load(const std::string& gid) { return store_.Load(gid, true).value(); }

  testing::InMemoryStore store_;
  ScriptedTransport transport_;
  testing::FakeClock clock_;
  testing::CountingIds ids_;
  testing::RecordingCrashPoints crash_;
  TccProcessor tcc_;
  TwoPhaseCommitProcessor twopc_;
  TransactionDriver driver_;
  TransactionService service_;
};

TEST_F(TccTest, EveryTrySucceededConfirmsAll) {
  std::string gid = Submit({Branch("order"), Branch("stock")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kCommitted);
  EXPECT_EQ(transport_.Calls(),
            (Strings{"order/try", "stock/try", "order/confirm", "stock/confirm"}));
  EXPECT_EQ(tx.log[1].reason, "all 2 branches tried");
  EXPECT_EQ(tx.reason, "every branch confirmed");
  EXPECT_EQ(crash_.reached(), (Strings{"after_begin", "after_try", "after_try", "after_decision",
                                       "after_confirm", "after_confirm"}));
}

TEST_F(TccTest, ARefusedTryCancelsEveryBranch) {
  transport_.Then("stock", "try", ScriptedTransport::Refused("out of stock"));
  std::string gid = Submit({Branch("order"), Branch("stock")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kAborted);
  EXPECT_EQ(tx.reason, "branch stock refused try: HTTP 409: out of stock");
  EXPECT_EQ(transport_.Calls(), (Strings{"order/try", "stock/try", "order/cancel", "stock/cancel"}))
      << "the refusing branch gets its cancel too: its barrier makes it a no-op";
}

TEST_F(TccTest, SequentialTriesOneBranchAtATimeAndStopsAtARefusal) {
  transport_.Then("b", "try", ScriptedTransport::Refused("no"));
  std::string gid = Submit({Branch("a"), Branch("b"), Branch("c")}, /*sequential=*/true);
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(transport_.Calls(), (Strings{"a/try", "b/try", "a/cancel", "b/cancel", "c/cancel"}))
      << "c's try is never sent";
  EXPECT_EQ(Load(gid).status, TxStatus::kAborted);
}

TEST_F(TccTest, ClientDrivenSubmitConfirmsWhatTheClientTried) {
  BeginRequest req;
  req.gid = "t2";
  req.mode = Mode::kTcc;
  ASSERT_TRUE(service_.Begin(req).ok());
  ASSERT_TRUE(service_.AddBranch("t2", Branch("order", /*with_try=*/false)).ok());
  ASSERT_TRUE(service_.AddBranch("t2", Branch("stock", /*with_try=*/false)).ok());
  BranchSpec no_cancel = Branch("x", false);
  no_cancel.urls.erase("cancel");
  EXPECT_EQ(service_.AddBranch("t2", no_cancel).message(), "branch x has no cancel URL");
  ASSERT_TRUE(service_.Submit("t2").ok());
  EXPECT_EQ(service_.AddBranch("t2", Branch("late", false)).code(), Status::Code::kConflict);
  ASSERT_TRUE(driver_.DriveNow("t2").ok());
  EXPECT_EQ(Load("t2").status, TxStatus::kCommitted);
  EXPECT_EQ(transport_.Calls(), (Strings{"order/confirm", "stock/confirm"}));
}

TEST_F(TccTest, ClientDrivenAbortCancelsEveryRegisteredBranch) {
  BeginRequest req;
  req.gid = "t3";
  req.mode = Mode::kTcc;
  ASSERT_TRUE(service_.Begin(req).ok());
  ASSERT_TRUE(service_.AddBranch("t3", Branch("order", false)).ok());
  ASSERT_TRUE(service_.Abort("t3").ok());
  EXPECT_EQ(service_.AddBranch("t3", Branch("late", false)).code(), Status::Code::kConflict);
  ASSERT_TRUE(driver_.DriveNow("t3").ok());
  EXPECT_EQ(Load("t3").status, TxStatus::kAborted);
  EXPECT_EQ(transport_.Calls(), (Strings{"order/cancel"}));
}

TEST_F(TccTest, NotSubmittedBeforeTheDeadlineCancelsTheClientsTries) {
  BeginRequest req;
  req.gid = "t4";
  req.mode = Mode::kTcc;
  req.timeout = milliseconds(300);
  ASSERT_TRUE(service_.Begin(req).ok());
  ASSERT_TRUE(service_.AddBranch("t4", Branch("order", false)).ok());
  clock_.Advance(milliseconds(300));
  ASSERT_TRUE(driver_.DriveNow("t4").ok());
  EXPECT_EQ(Load("t4").status, TxStatus::kAborted);
  EXPECT_EQ(Load("t4").reason, "not submitted before its deadline");
  EXPECT_EQ(transport_.Calls(), (Strings{"order/cancel"}));
}

TEST_F(TccTest, ARefusedConfirmIsFlaggedAndRetriedUntilItSucceeds) {
  transport_.Then("stock", "confirm", ScriptedTransport::Refused("bug"));
  std::string gid = Submit({Branch("stock")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kCommitting);
  EXPECT_EQ(tx.attention,
            "branch stock refused confirm after the decision (a participant bug); retrying: HTTP "
            "409: bug");
  EXPECT_EQ(tx.FindOp("stock", "confirm")->status, OpStatus::kRefused);
  clock_.Advance(tx.next_attempt_at - clock_.Now());
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitted);
  EXPECT_EQ(Load(gid).attention, "");
}

TEST_F(TccTest, WrongOpsForTheModeAreRefused) {
  BeginRequest req;
  req.gid = "t5";
  req.mode = Mode::kTcc;
  BranchSpec b = Branch("x");
  b.urls["prepare"] = "http://p/x/prepare";
  req.branches = {b};
  EXPECT_EQ(service_.Begin(req).status().message(), "branch x: prepare is not an op of tcc");
  req.branches = {Branch("x", /*with_try=*/false)};
  EXPECT_EQ(service_.Begin(req).status().message(), "branch x has no try URL");
}

}  // namespace
}  // namespace treaty::core
