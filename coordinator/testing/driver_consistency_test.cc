// The driver's hold on what it drives: fenced writes, a lease that outlives no call, op outcomes
// that never go back, drives resumed after a store outage, and admission under overload. Over
// the in-memory store, whose clock (the "database's") is the fake clock.

#include <gtest/gtest.h>

#include <thread>

#include "coordinator/core/testing/fakes.h"
#include "coordinator/core/testing/faulty_store.h"
#include "coordinator/core/testing/in_memory_store.h"
#include "coordinator/core/transaction_driver.h"
#include "coordinator/core/transaction_service.h"
#include "coordinator/core/twopc_processor.h"
#include "coordinator/saga/saga_processor.h"
#include "mqtx/msg_processor.h"
#include "tcc/tcc_processor.h"

namespace treaty::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ScriptedTransport;
using Strings = std::vector<std::string>;

BranchSpec Step(const std::string& id, Strings after = {}) {
  return BranchSpec{
      id,
      {{"action", "http://p/" + id + "/action"}, {"compensate", "http://p/" + id + "/compensate"}},
      "{}",
      std::nullopt,
      std::move(after)};
}

BranchSpec TwoPcBranch(const std::string& id) {
  return BranchSpec{id,
                    {{"prepare", "http://p/" + id + "/prepare"},
                     {"commit", "http://p/" + id + "/commit"},
                     {"abort", "http://p/" + id + "/abort"}}};
}

BranchSpec ClientTccBranch(const std::string& id) {
  return BranchSpec{
      id, {{"confirm", "http://p/" + id + "/confirm"}, {"cancel", "http://p/" + id + "/cancel"}}};
}

// A store on which something happens just before the next transition is written: what another
// process commits between a drive's load and its decision.
class InterleavingStore : public testing::FaultyStore {
 public:
  using FaultyStore::FaultyStore;
  std::function<void()> before_transition;
  Status Transition(const std::string& gid, TxStatus from, TxStatus to, const std::string& reason,
                    TimePoint now, const std::vector<BranchOp>& ops, const Fence* fence) override {
    if (auto first = std::exchange(before_transition, nullptr)) first();
    return FaultyStore::Transition(gid, from, to, reason, now, ops, fence);
  }
};

// Waits (in real time, up to 10 s) until `done` holds.
template <typename Fn>
bool WaitFor(Fn done) {
  auto until = std::chrono::steady_clock::now() + seconds(10);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

class DriverTest : public ::testing::Test {
 protected:
  DriverOptions Options(const std::string& owner) {
    return DriverOptions{.owner = owner,
                         .workers = 1,
                         .poll_interval = milliseconds(5),
                         .lease = seconds(10),
                         .retry = RetryPolicy{milliseconds(50), milliseconds(400), 2, 0}};
  }
  Result<BeginOutcome> Begin(TransactionService& service, const std::string& gid, Mode mode,
                             std::vector<BranchSpec> branches) {
    BeginRequest req;
    req.gid = gid;
    req.mode = mode;
    req.branches = std::move(branches);
    return service.Begin(req);
  }
  Transaction Load(const std::string& gid) { return store_.Load(gid, false).value(); }

  testing::FakeClock clock_;  // before the store: it is the store's clock
  testing::InMemoryStore store_{&clock_};
  ScriptedTransport transport_;
  testing::CountingIds ids_;
  testing::RecordingCrashPoints crash_;
  SagaProcessor saga_;
  TwoPhaseCommitProcessor twopc_;
  MsgProcessor msg_;
};

TEST_F(DriverTest, AStaleDriverStopsAtItsNextWriteAndCallsNothingMore) {
  TransactionDriver a(Options("node-a"), store_, transport_, clock_, ids_, crash_, {&saga_});
  TransactionService service(store_, a, clock_, ids_, crash_, seconds(60));
  ASSERT_TRUE(
      Begin(service, "s1", Mode::kSaga, {Step("x"), Step("y", {"x"}), Step("z", {"y"})}).ok());
  // While node-a waits for x's action, it is paused past its lease: node-b takes the saga over
  // and a client aborts it.
  transport_.OnCall([&](const BranchCall& c) {
    if (c.branch_id != "x" || c.op != "action") return;
    clock_.Advance(seconds(11));
    ASSERT_TRUE(store_.TryLease("s1", "node-b", seconds(10)).value());
    ASSERT_TRUE(store_
                    .Transition("s1", TxStatus::kActive, TxStatus::kAborting,
                                "aborted by the client", clock_.Now(), {}, nullptr)
                    .ok());
  });
  Status s = a.DriveNow("s1");
  EXPECT_EQ(s.code(), Status::Code::kLeaseLost) << s.ToString();
  EXPECT_EQ(transport_.Calls(), Strings{"x/action"})
      << "node-a must not call y once it lost the lease";
  EXPECT_EQ(Load("s1").FindOp("x", "action")->attempts, 0) << "nor write x's outcome";

  transport_.OnCall(nullptr);
  TransactionDriver b(Options("node-b"), store_, transport_, clock_, ids_, crash_, {&saga_});
  ASSERT_TRUE(b.DriveNow("s1").ok());
  EXPECT_EQ(Load("s1").status, TxStatus::kAborted);
  // x ran (its outcome unrecorded); y and z never did, but node-a could still send them late:
  // every compensable step is compensated, in reverse dependency order.
  EXPECT_EQ(transport_.Calls(),
            (Strings{"x/action", "z/compensate", "y/compensate", "x/compensate"}));
}

TEST_F(DriverTest, ABranchThatJoinsAsTheDeadlineAbortIsDecidedIsCancelledToo) {
  // Found by the chaos suite (seed 2): a client registered its second TCC branch, and ran its
  // try, while a coordinator that had loaded the transaction decided the deadline's abort; the
  // abort cancelled only the branch it had loaded, leaving the other's try applied.
  TccProcessor tcc;
  InterleavingStore store(store_);
  TransactionDriver a(Options("node-a"), store, transport_, clock_, ids_, crash_, {&tcc});
  TransactionService service(store, a, clock_, ids_, crash_, seconds(60));
  BeginRequest req;
  req.gid = "c1";
  req.mode = Mode::kTcc;
  req.timeout = seconds(5);
  ASSERT_TRUE(service.Begin(req).ok());
  ASSERT_TRUE(service.AddBranch("c1", ClientTccBranch("a")).ok());
  clock_.Advance(seconds(6));  // unsubmitted at its deadline
  store.before_transition = [&] {
    ASSERT_TRUE(service.AddBranch("c1", ClientTccBranch("b")).ok());
  };
  ASSERT_TRUE(a.DriveNow("c1").ok());
  EXPECT_EQ(Load("c1").status, TxStatus::kAborted);
  Strings calls = transport_.Calls();
  std::sort(calls.begin(), calls.end());
  EXPECT_EQ(calls, (Strings{"a/cancel", "b/cancel"})) << "a branch that joined was never cancelled";
}

TEST_F(DriverTest, ARestartUnderTheSameNodeIdFencesOutThePredecessorStillRunning) {
  DriverOptions first = Options("node-a#1");
  first.node_id = "node-a";
  TransactionDriver a1(first, store_, transport_, clock_, ids_, crash_, {&saga_});
  TransactionService service(store_, a1, clock_, ids_, crash_, seconds(60));
  ASSERT_TRUE(Begin(service, "s3", Mode::kSaga, {Step("x"), Step("y", {"x"})}).ok());
  // While the first run waits for x, node-a is started again (its supervisor thought it dead):
  // the new run frees the node's leases and takes the saga.
  transport_.OnCall([&](const BranchCall& c) {
    if (c.branch_id != "x" || c.op != "action") return;
    ASSERT_TRUE(store_.ReleaseLeases("node-a").ok());
    ASSERT_TRUE(store_.TryLease("s3", "node-a#2", seconds(10)).value());
  });
  EXPECT_EQ(a1.DriveNow("s3").code(), Status::Code::kLeaseLost);
  EXPECT_EQ(transport_.Calls(), Strings{"x/action"}) << "the old run went on to y";
}

TEST_F(DriverTest, AStaleTransitionChangesNothing) {
  TransactionDriver a(Options("node-a"), store_, transport_, clock_, ids_, crash_, {&twopc_});
  TransactionService service(store_, a, clock_, ids_, crash_, seconds(60));
  ASSERT_TRUE(Begin(service, "t1", Mode::k2pc, {TwoPcBranch("p"), TwoPcBranch("q")}).ok());
  // Both prepare; node-a is paused past its lease before it records the decision, and node-b
  // holds the transaction when it wakes up.
  transport_.OnCall([&](const BranchCall& c) {
    if (c.branch_id != "q" || c.op != "prepare") return;
    clock_.Advance(seconds(11));
    ASSERT_TRUE(store_.TryLease("t1", "node-b", seconds(10)).value());
  });
  EXPECT_EQ(a.DriveNow("t1").code(), Status::Code::kLeaseLost);
  Transaction tx = Load("t1");
  EXPECT_EQ(tx.status, TxStatus::kActive) << "node-a's commit decision must not be recorded";
  EXPECT_EQ(tx.FindOp("p", "prepare")->attempts, 0);
  EXPECT_EQ(transport_.Calls(), (Strings{"p/prepare", "q/prepare"})) << "and no commit sent";
}

TEST_F(DriverTest, RecordedOutcomesNeverGoBack) {
  TransactionDriver a(Options("node-a"), store_, transport_, clock_, ids_, crash_, {&saga_});
  TransactionService service(store_, a, clock_, ids_, crash_, seconds(60));
  ASSERT_TRUE(Begin(service, "s2", Mode::kSaga, {Step("x"), Step("y")}).ok());
  const Fence fence{"node-a", seconds(10)};
  BranchOp done = *Load("s2").FindOp("x", "action");
  done.status = OpStatus::kSucceeded;
  done.attempts = 2;
  ASSERT_TRUE(store_.RecordOps("s2", {done}, clock_.Now(), fence).ok());
  BranchOp stale = done;
  stale.status = OpStatus::kPending;
  stale.attempts = 1;
  stale.last_error = "timed out";
  ASSERT_TRUE(store_.RecordOps("s2", {stale}, clock_.Now(), fence).ok());
  EXPECT_EQ(Load("s2").FindOp("x", "action")->status, OpStatus::kSucceeded);

  BranchOp refused = *Load("s2").FindOp("y", "action");
  refused.status = OpStatus::kRefused;
  ASSERT_TRUE(store_.RecordOps("s2", {refused}, clock_.Now(), fence).ok());
  refused.status = OpStatus::kPending;
  ASSERT_TRUE(store_.RecordOps("s2", {refused}, clock_.Now(), fence).ok());
  EXPECT_EQ(Load("s2").FindOp("y", "action")->status, OpStatus::kRefused);
}

TEST_F(DriverTest, ADriveCutShortByAStoreOutageResumesAfterTheBackoffNotTheLease) {
  DriverOptions options = Options("node-a");
  options.lease = std::chrono::hours(1);  // the fake clock never gets there
  testing::FaultyStore store(store_);
  TransactionDriver a(options, store, transport_, clock_, ids_, crash_, {&twopc_});
  TransactionService service(store, a, clock_, ids_, crash_, std::chrono::hours(2));
  // The store goes down while the participants prepare: the decision cannot be recorded, nor
  // the lease given back.
  transport_.OnCall([&](const BranchCall& c) {
    if (c.op == "prepare" && c.branch_id == "q") store.FailAll();
  });
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(Begin(service, "t2", Mode::k2pc, {TwoPcBranch("p"), TwoPcBranch("q")}).ok());
  ASSERT_TRUE(WaitFor([&] { return store.Calls(testing::StoreMethod::kReschedule) >= 1; }));
  transport_.OnCall(nullptr);
  store.ClearAll();
  // Time moves on by the backoff's steps, nowhere near the lease.
  EXPECT_TRUE(WaitFor([&] {
    clock_.Advance(milliseconds(50));
    return Load("t2").status == TxStatus::kCommitted;
  })) << "still "
      << StatusName(Load("t2").status);
  a.Stop();
}

TEST_F(DriverTest, OverloadRefusesNewWorkBeforeStoringIt) {
  DriverOptions options = Options("node-a");
  options.max_queued = 2;
  TransactionDriver a(options, store_, transport_, clock_, ids_, crash_, {&twopc_});  // not started
  TransactionService service(store_, a, clock_, ids_, crash_, seconds(60));
  ASSERT_TRUE(Begin(service, "o1", Mode::k2pc, {TwoPcBranch("p")}).ok());
  ASSERT_TRUE(Begin(service, "o2", Mode::k2pc, {TwoPcBranch("p")}).ok());
  auto third = Begin(service, "o3", Mode::k2pc, {TwoPcBranch("p")});
  EXPECT_EQ(third.status().code(), Status::Code::kResourceExhausted);
  EXPECT_EQ(store_.Load("o3", false).status().code(), Status::Code::kNotFound);
}

TEST_F(DriverTest, AnOperatorsAbortOfAHalfMessageAsksTheServiceFirst) {
  TransactionDriver a(Options("node-a"), store_, transport_, clock_, ids_, crash_, {&msg_});
  TransactionService service(store_, a, clock_, ids_, crash_, seconds(60), seconds(30));
  for (const std::string gid : {"m1", "m2", "m3"}) {
    BeginRequest req;
    req.gid = gid;
    req.mode = Mode::kMsg;
    req.messages = {MessageSpec{"orders.events", "o-1", R"({"placed":true})", {}}};
    req.query_url = "http://svc/query";
    ASSERT_TRUE(service.Begin(req).ok());
  }
  // The service cannot be reached: nothing changes, and the operator is told why.
  transport_.Then("query", "query", ScriptedTransport::Unknown(503, "down"));
  auto unreachable = service.Abort("m1", AbortBy::kOther);
  EXPECT_EQ(unreachable.status().code(), Status::Code::kConflict);
  EXPECT_NE(unreachable.status().message().find("could not be asked"), std::string::npos);
  EXPECT_EQ(Load("m1").status, TxStatus::kPrepared);
  EXPECT_EQ(Load("m1").FindOp("query", "query")->attempts, 0);
  // It committed: the abort is refused and the message goes out (here: waits for Kafka).
  auto committed = service.Abort("m2", AbortBy::kOther);
  EXPECT_EQ(committed.status().code(), Status::Code::kConflict);
  EXPECT_EQ(Load("m2").status, TxStatus::kCommitting);
  // It rolled back: dropped.
  transport_.Then("query", "query", ScriptedTransport::Refused("rolled back"));
  auto rolled_back = service.Abort("m3", AbortBy::kOther);
  ASSERT_TRUE(rolled_back.ok()) << rolled_back.status().ToString();
  EXPECT_EQ(Load("m3").status, TxStatus::kAborted);
  EXPECT_EQ(transport_.Calls(), (Strings{"query/query", "query/query", "query/query"}));
  // The service's own abort needs no question.
  BeginRequest req;
  req.gid = "m4";
  req.mode = Mode::kMsg;
  req.messages = {MessageSpec{"orders.events", "o-1", "{}", {}}};
  req.query_url = "http://svc/query";
  ASSERT_TRUE(service.Begin(req).ok());
  ASSERT_TRUE(service.Abort("m4", AbortBy::kService).ok());
  EXPECT_EQ(Load("m4").status, TxStatus::kAborting);
  EXPECT_EQ(transport_.Calls().size(), 3u);
}

}  // namespace
}  // namespace treaty::core
