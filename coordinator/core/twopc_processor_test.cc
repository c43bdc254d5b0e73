// The 2PC processor driven through the real TransactionService and TransactionDriver, over the
// in-memory store, a scripted transport and a fake clock: every transition, and the illegal ones.

#include "coordinator/core/twopc_processor.h"

#include <gtest/gtest.h>

#include "coordinator/core/testing/fakes.h"
#include "coordinator/core/testing/in_memory_store.h"
#include "coordinator/core/transaction_service.h"

namespace treaty::core {
namespace {

using std::chrono::milliseconds;
using testing::ScriptedTransport;
using Strings = std::vector<std::string>;

BranchSpec Branch(const std::string& id, const std::string& payload = "{}") {
  return BranchSpec{id,
                    {{"prepare", "http://p/" + id + "/prepare"},
                     {"commit", "http://p/" + id + "/commit"},
                     {"abort", "http://p/" + id + "/abort"}},
                    payload,
                    std::nullopt};
}

class TwoPcTest : public ::testing::Test {
 protected:
  TwoPcTest()
      : driver_(DriverOptions{.owner = "node-a",
                              .retry = RetryPolicy{milliseconds(200), milliseconds(5000), 2, 0}},
                store_, transport_, clock_, ids_, crash_, {&processor_}),
        service_(store_, driver_, clock_, ids_, crash_, std::chrono::seconds(10)) {}

  std::string Begin(std::vector<BranchSpec> branches, std::string gid = "g1",
                    std::string digest = "d1") {
    BeginRequest req;
    req.gid = gid;
    req.branches = std::move(branches);
    req.request_digest = digest;
    auto r = service_.Begin(req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return gid;
  }

  Transaction Load(const std::string& gid) {
    auto tx = store_.Load(gid, true);
    EXPECT_TRUE(tx.ok());
    return tx.ok() ? *tx : Transaction{};
  }

  Strings Statuses(const Transaction& tx) {
    Strings out;
    for (const LogEntry& e : tx.log) out.emplace_back(StatusName(e.to));
    return out;
  }

  testing::InMemoryStore store_;
  ScriptedTransport transport_;
  testing::FakeClock clock_;
  testing::CountingIds ids_;
  testing::RecordingCrashPoints crash_;
  TwoPhaseCommitProcessor processor_;
  TransactionDriver driver_;
  TransactionService service_;
};

TEST_F(TwoPcTest, AllPreparedCommitsEveryBranch) {
  std::string gid = Begin({Branch("order", R"({"sku":"A1"})"), Branch("stock")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kCommitted);
  EXPECT_EQ(transport_.Calls(),
            (Strings{"order/prepare", "stock/prepare", "order/commit", "stock/commit"}));
  EXPECT_EQ(Statuses(tx), (Strings{"active", "committing", "committed"}));
  EXPECT_EQ(tx.log[1].reason, "all 2 branches prepared");
  EXPECT_EQ(crash_.reached(), (Strings{"after_begin", "after_prepare", "after_prepare",
                                       "after_decision", "after_commit", "after_commit"}));
  for (const BranchOp& op : tx.ops) {
    if (op.op == "abort") {
      EXPECT_EQ(op.attempts, 0);
    } else {
      EXPECT_EQ(op.status, OpStatus::kSucceeded) << op.branch_id << "/" << op.op;
      EXPECT_EQ(op.attempts, 1);
    }
  }
}

TEST_F(TwoPcTest, TheDecisionIsOneWriteWithTheOutcomesThatLedToIt) {
  std::string gid = Begin({Branch("order"), Branch("stock")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  // Created; decided together with both prepares' outcomes; finished together with both
  // commits'. No separate write per round of calls.
  EXPECT_EQ(store_.Calls("Create"), 1);
  EXPECT_EQ(store_.Calls("Transition"), 2);
  EXPECT_EQ(store_.Calls("RecordOps"), 0);
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.FindOp("order", "prepare")->attempts, 1);
  EXPECT_EQ(tx.FindOp("stock", "commit")->status, OpStatus::kSucceeded);
}

TEST_F(TwoPcTest, AnIllegalDecisionRecordsNoOutcomes) {
  std::string gid = Begin({Branch("order")});
  BranchOp prepared = *Load(gid).FindOp("order", "prepare");
  prepared.status = OpStatus::kSucceeded;
  prepared.attempts = 1;
  TimePoint now = clock_.Now();
  EXPECT_EQ(
      store_.Transition(gid, TxStatus::kActive, TxStatus::kCommitted, "", now, {prepared}, nullptr)
          .code(),
      Status::Code::kConflict);
  BranchOp unknown = prepared;
  unknown.branch_id = "nobody";
  EXPECT_EQ(store_
                .Transition(gid, TxStatus::kActive, TxStatus::kCommitting, "", now,
                            {prepared, unknown}, nullptr)
                .code(),
            Status::Code::kNotFound);
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kActive);
  EXPECT_EQ(tx.FindOp("order", "prepare")->attempts, 0) << "nothing recorded without the move";
}

TEST_F(TwoPcTest, AWaitingClientIsAnsweredFromTheDriveWithoutReadingTheStore) {
  TransactionDriver driver(DriverOptions{.owner = "node-b", .final_poll = std::chrono::hours(1)},
                           store_, transport_, clock_, ids_, crash_, {&processor_});
  TransactionService service(store_, driver, clock_, ids_, crash_, std::chrono::seconds(10));
  ASSERT_TRUE(driver.Start().ok());
  BeginRequest req;
  req.gid = "waited";
  req.branches = {Branch("order"), Branch("stock")};
  req.request_digest = "d";
  req.wait = true;
  auto begun = service.Begin(req);
  ASSERT_TRUE(begun.ok()) << begun.status().ToString();
  ASSERT_NE(begun->watch, nullptr);
  auto done = service.WaitFinal(*begun, clock_.Now() + std::chrono::seconds(10));
  driver.Stop();
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->status, TxStatus::kCommitted);
  EXPECT_EQ(done->FindOp("stock", "commit")->status, OpStatus::kSucceeded);
  // The worker started from the created transaction and the waiter got the final one.
  EXPECT_EQ(store_.Calls("Load"), 0);
  Transaction stored = Load("waited");
  EXPECT_EQ(stored.status, TxStatus::kCommitted);
  EXPECT_EQ(stored.FindOp("stock", "commit")->attempts, 1);
}

TEST_F(TwoPcTest, AWaitThatEndsBeforeTheOutcomeMakesTheBeginDurableFirst) {
  // The begin of a waiting 2PC client may ride unforced on its decision; an answer before the
  // decision (the wait ran out) says the transaction was accepted, so a forced write of its row
  // (MakeDue) comes first.
  TransactionDriver driver(DriverOptions{.owner = "node-b", .final_poll = std::chrono::hours(1)},
                           store_, transport_, clock_, ids_, crash_, {&processor_});
  TransactionService service(store_, driver, clock_, ids_, crash_, std::chrono::seconds(10));
  ASSERT_TRUE(driver.Start().ok());
  transport_.Then("stock", "prepare", ScriptedTransport::Unknown(503, "busy"), 100);
  BeginRequest req;
  req.gid = "undecided";
  req.branches = {Branch("order"), Branch("stock")};
  req.request_digest = "d";
  req.wait = true;
  auto begun = service.Begin(req);
  ASSERT_TRUE(begun.ok()) << begun.status().ToString();
  EXPECT_TRUE(begun->tx.begin_may_ride);
  const int before = store_.Calls("MakeDue");
  auto done = service.WaitFinal(*begun, clock_.Now());  // the wait has run out
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  EXPECT_EQ(done->status, TxStatus::kActive);
  EXPECT_EQ(store_.Calls("MakeDue"), before + 1) << "answered accepted with no forced write";

  // A client that does not wait is answered at once: its begin is an answer, never riding.
  BeginRequest other = req;
  other.gid = "unwaited";
  other.wait = false;
  auto accepted = service.Begin(other);
  driver.Stop();
  ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
  EXPECT_FALSE(accepted->tx.begin_may_ride);
}

TEST_F(TwoPcTest, CallsCarryTheProtocolBody) {
  std::string gid = Begin({Branch("stock", R"({"sku":"A1","qty":2})")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  BranchCall first = transport_.RawCalls().at(0);
  EXPECT_EQ(first.url, "http://p/stock/prepare");
  EXPECT_EQ(
      first.body,
      R"({"gid":"g1","branch_id":"stock","op":"prepare","mode":"2pc","payload":{"sku":"A1","qty":2}})");
  EXPECT_EQ(first.timeout, std::chrono::seconds(3));
}

TEST_F(TwoPcTest, ARefusedPrepareAbortsEveryBranch) {
  transport_.Then("stock", "prepare", ScriptedTransport::Refused("out of stock"));
  std::string gid = Begin({Branch("order"), Branch("stock")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kAborted);
  EXPECT_EQ(tx.reason, "branch stock refused prepare: HTTP 409: out of stock");
  EXPECT_EQ(transport_.Calls(),
            (Strings{"order/prepare", "stock/prepare", "order/abort", "stock/abort"}));
  EXPECT_EQ(Statuses(tx), (Strings{"active", "aborting", "aborted"}));
}

TEST_F(TwoPcTest, AnUnknownPrepareIsRetriedAfterBackoff) {
  transport_.Then("stock", "prepare", ScriptedTransport::Unknown(503, "busy"));
  std::string gid = Begin({Branch("order"), Branch("stock")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kActive);
  EXPECT_EQ(tx.next_attempt_at, clock_.Now() + milliseconds(200));
  EXPECT_EQ(tx.FindOp("stock", "prepare")->last_error, "HTTP 503: busy");
  EXPECT_EQ(tx.FindOp("stock", "prepare")->attempts, 1);

  clock_.Advance(milliseconds(200));
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kCommitted);
  EXPECT_EQ(tx.FindOp("stock", "prepare")->attempts, 2);
  EXPECT_EQ(tx.FindOp("order", "prepare")->attempts, 1) << "a prepared branch is not asked again";
}

TEST_F(TwoPcTest, BackoffGrowsAndNeverPassesTheDeadline) {
  transport_.Then("stock", "prepare", ScriptedTransport::Unknown(), 100);
  BeginRequest req;
  req.gid = "g1";
  req.branches = {Branch("stock")};
  req.timeout = milliseconds(700);
  ASSERT_TRUE(service_.Begin(req).ok());
  TimePoint start = clock_.Now();
  ASSERT_TRUE(driver_.DriveNow("g1").ok());
  EXPECT_EQ(Load("g1").next_attempt_at, start + milliseconds(200));
  clock_.Advance(milliseconds(200));
  ASSERT_TRUE(driver_.DriveNow("g1").ok());
  EXPECT_EQ(Load("g1").next_attempt_at, start + milliseconds(600));
  clock_.Advance(milliseconds(400));
  ASSERT_TRUE(driver_.DriveNow("g1").ok());
  EXPECT_EQ(Load("g1").next_attempt_at, start + milliseconds(700)) << "capped at the deadline";
  clock_.Advance(milliseconds(100));
  ASSERT_TRUE(driver_.DriveNow("g1").ok());
  Transaction tx = Load("g1");
  EXPECT_EQ(tx.status, TxStatus::kAborted);
  EXPECT_EQ(tx.reason,
            "deadline passed before every branch prepared; branch stock prepare unanswered: HTTP "
            "503: unavailable");
  EXPECT_EQ(transport_.Calls().back(), "stock/abort") << "its prepare may have run";
}

TEST_F(TwoPcTest, AbortReachesABranchWhosePrepareLeftNoRecord) {
  // The prepare reached the participant but the coordinator died before recording it: the
  // store shows no attempt. Aborting must still tell that participant.
  std::string gid = Begin({Branch("order"), Branch("stock")});
  ASSERT_TRUE(store_
                  .Transition(gid, TxStatus::kActive, TxStatus::kAborting, "test", clock_.Now(), {},
                              nullptr)
                  .ok());
  ASSERT_EQ(Load(gid).FindOp("stock", "prepare")->attempts, 0);
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(transport_.Calls(), (Strings{"order/abort", "stock/abort"}));
  EXPECT_EQ(Load(gid).status, TxStatus::kAborted);
}

TEST_F(TwoPcTest, PhaseTwoRetriesUntilEveryCommitSucceeds) {
  transport_.Then("stock", "commit", ScriptedTransport::Unknown(0, "connection refused"), 6);
  std::string gid = Begin({Branch("order"), Branch("stock")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  for (int i = 0; i < 6; ++i) {
    Transaction tx = Load(gid);
    ASSERT_EQ(tx.status, TxStatus::kCommitting);
    clock_.Advance(tx.next_attempt_at - clock_.Now());
    ASSERT_TRUE(driver_.DriveNow(gid).ok());
  }
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kCommitted);
  EXPECT_EQ(tx.FindOp("stock", "commit")->attempts, 7);
  EXPECT_EQ(tx.FindOp("order", "commit")->attempts, 1);
  EXPECT_EQ(tx.attention, "") << "cleared once it finished";
}

TEST_F(TwoPcTest, StuckCommitRaisesAttentionAndKeepsTrying) {
  transport_.Then("stock", "commit", ScriptedTransport::Unknown(0, "connection refused"), 5);
  std::string gid = Begin({Branch("stock")});
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(driver_.DriveNow(gid).ok());
    clock_.Advance(Load(gid).next_attempt_at - clock_.Now());
  }
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kCommitting);
  EXPECT_EQ(tx.attention,
            "branch stock commit still unanswered after 5 attempts: connection refused");
}

TEST_F(TwoPcTest, ARefusedCommitIsFlaggedAndRetried) {
  transport_.Then("stock", "commit", ScriptedTransport::Refused("no such prepared transaction"));
  std::string gid = Begin({Branch("stock")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kCommitting) << "a decision is never reversed";
  EXPECT_EQ(tx.attention,
            "branch stock refused commit after the decision (a participant bug); retrying: HTTP "
            "409: no such prepared transaction");
  clock_.Advance(tx.next_attempt_at - clock_.Now());
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitted);
  EXPECT_EQ(Load(gid).attention, "");
}

TEST_F(TwoPcTest, BeginRegisterSubmit) {
  BeginRequest req;
  req.gid = "g2";
  ASSERT_TRUE(service_.Begin(req).ok());
  ASSERT_TRUE(service_.AddBranch("g2", Branch("order")).ok());
  ASSERT_TRUE(service_.AddBranch("g2", Branch("stock")).ok());
  EXPECT_EQ(service_.AddBranch("g2", Branch("stock")).code(), Status::Code::kConflict);
  ASSERT_TRUE(driver_.DriveNow("g2").ok());
  EXPECT_TRUE(transport_.Calls().empty()) << "nothing is called before submit";
  EXPECT_EQ(Load("g2").status, TxStatus::kActive);

  ASSERT_TRUE(service_.Submit("g2").ok());
  EXPECT_EQ(service_.AddBranch("g2", Branch("late")).code(), Status::Code::kConflict);
  ASSERT_TRUE(driver_.DriveNow("g2").ok());
  EXPECT_EQ(Load("g2").status, TxStatus::kCommitted);
  EXPECT_EQ(transport_.Calls(),
            (Strings{"order/prepare", "stock/prepare", "order/commit", "stock/commit"}));
  ASSERT_TRUE(service_.Submit("g2").ok()) << "submitting again is harmless";
}

TEST_F(TwoPcTest, NotSubmittedBeforeTheDeadlineAbortsWithoutCalls) {
  BeginRequest req;
  req.gid = "g3";
  req.timeout = milliseconds(500);
  ASSERT_TRUE(service_.Begin(req).ok());
  ASSERT_TRUE(service_.AddBranch("g3", Branch("order")).ok());
  clock_.Advance(milliseconds(500));
  ASSERT_TRUE(driver_.DriveNow("g3").ok());
  Transaction tx = Load("g3");
  EXPECT_EQ(tx.status, TxStatus::kAborted);
  EXPECT_EQ(tx.reason, "not submitted before its deadline");
  EXPECT_TRUE(transport_.Calls().empty()) << "no prepare ran, so no abort is needed";
  EXPECT_EQ(service_.Submit("g3").status().code(), Status::Code::kConflict);
}

TEST_F(TwoPcTest, ClientAbortBeforeTheDecision) {
  BeginRequest req;
  req.gid = "g4";
  ASSERT_TRUE(service_.Begin(req).ok());
  ASSERT_TRUE(service_.AddBranch("g4", Branch("order")).ok());
  auto aborted = service_.Abort("g4");
  ASSERT_TRUE(aborted.ok());
  EXPECT_EQ(aborted->status, TxStatus::kAborting);
  ASSERT_TRUE(driver_.DriveNow("g4").ok());
  EXPECT_EQ(Load("g4").status, TxStatus::kAborted);
  EXPECT_EQ(Load("g4").reason, "aborted by the client");
  EXPECT_TRUE(service_.Abort("g4").ok()) << "aborting again is harmless";
}

TEST_F(TwoPcTest, AbortAfterTheCommitDecisionIsRefused) {
  transport_.Then("stock", "commit", ScriptedTransport::Unknown());
  std::string gid = Begin({Branch("stock")});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  ASSERT_EQ(Load(gid).status, TxStatus::kCommitting);
  EXPECT_EQ(service_.Abort(gid).status().code(), Status::Code::kConflict);
}

TEST_F(TwoPcTest, SameGidSameRequestIsOneTransaction) {
  Begin({Branch("stock")}, "g5", "digest-1");
  BeginRequest again;
  again.gid = "g5";
  again.branches = {Branch("stock")};
  again.request_digest = "digest-1";
  auto r = service_.Begin(again);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->created);
  again.request_digest = "digest-2";
  EXPECT_EQ(service_.Begin(again).status().code(), Status::Code::kConflict);
}

TEST_F(TwoPcTest, TheStoreRefusesIllegalTransitions) {
  std::string gid = Begin({Branch("stock")});
  TimePoint now = clock_.Now();
  EXPECT_EQ(
      store_.Transition(gid, TxStatus::kActive, TxStatus::kCommitted, "", now, {}, nullptr).code(),
      Status::Code::kConflict);
  EXPECT_EQ(
      store_.Transition(gid, TxStatus::kCommitting, TxStatus::kCommitted, "", now, {}, nullptr)
          .code(),
      Status::Code::kConflict)
      << "the stored status is not committing";
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(store_.Transition(gid, TxStatus::kCommitted, TxStatus::kAborting, "", now, {}, nullptr)
                .code(),
            Status::Code::kConflict);
}

TEST_F(TwoPcTest, AStoreOutageStopsTheDriveAndRecoveryFinishesIt) {
  std::string gid = Begin({Branch("order"), Branch("stock")});
  store_.SetUnavailable(true);
  EXPECT_EQ(driver_.DriveNow(gid).code(), Status::Code::kUnavailable);
  store_.SetUnavailable(false);
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitted);
}

TEST_F(TwoPcTest, AWakeUpMadeDuringADriveIsNotLost) {
  BeginRequest req;
  req.gid = "g7";
  ASSERT_TRUE(service_.Begin(req).ok());
  TimePoint now = clock_.Now();
  // A client submits (or asks for a retry) while the driver is deciding to sleep until later.
  ASSERT_TRUE(store_.MakeDue("g7", now).ok());
  ASSERT_TRUE(store_.Reschedule("g7", "node-a", now + std::chrono::seconds(10)).ok());
  EXPECT_EQ(Load("g7").next_attempt_at, now) << "the client's wake-up was lost";
  ASSERT_TRUE(store_.Reschedule("g7", "node-a", now + std::chrono::seconds(10)).ok());
  EXPECT_EQ(Load("g7").next_attempt_at, now + std::chrono::seconds(10));
}

TEST_F(TwoPcTest, OnlyTheLeaseHolderReschedules) {
  std::string gid = Begin({Branch("stock")});
  TimePoint now = clock_.Now();
  ASSERT_TRUE(store_.Reschedule(gid, "node-b", now + std::chrono::hours(1)).ok());
  EXPECT_EQ(Load(gid).next_attempt_at, now) << "a coordinator without the lease moved it";
  EXPECT_EQ(store_.LeaseOwner(gid), "node-a");
}

TEST_F(TwoPcTest, ValidationOfBranches) {
  BeginRequest req;
  req.gid = "g6";
  req.branches = std::vector<BranchSpec>{};
  EXPECT_EQ(service_.Begin(req).status().message(), "branches must not be empty");
  BranchSpec no_abort = Branch("x");
  no_abort.urls.erase("abort");
  req.branches = {no_abort};
  EXPECT_EQ(service_.Begin(req).status().message(), "branch x has no abort URL");
  req.branches = {Branch("x"), Branch("x")};
  EXPECT_EQ(service_.Begin(req).status().message(), "branch id x appears twice");
  req.gid = "bad gid";
  req.branches = {Branch("x")};
  EXPECT_EQ(service_.Begin(req).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(service_.Get("g6").status().code(), Status::Code::kNotFound) << "nothing was stored";
}

}  // namespace
}  // namespace treaty::core
