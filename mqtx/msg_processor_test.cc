// The msg processor through the real TransactionService and TransactionDriver, over the
// in-memory store, a scripted transport (the check-back), a scripted message sink and a fake
// clock.

#include "mqtx/msg_processor.h"

#include <gtest/gtest.h>

#include <deque>

#include "coordinator/core/testing/fakes.h"
#include "coordinator/core/testing/in_memory_store.h"
#include "coordinator/core/transaction_service.h"

namespace treaty::core {
namespace {

using std::chrono::milliseconds;
using testing::ScriptedTransport;

class ScriptedSink : public MessageSink {
 public:
  std::vector<MessageResult> Deliver(const std::vector<OutboundMessage>& messages) override {
    std::vector<MessageResult> out;
    for (const OutboundMessage& m : messages) {
      if (failures > 0) {
        --failures;
        out.push_back({false, "broker down"});
      } else {
        delivered.push_back(m);
        out.push_back({true, ""});
      }
    }
    return out;
  }
  int failures = 0;
  std::vector<OutboundMessage> delivered;
};

class MsgTest : public ::testing::Test {
 protected:
  MsgTest()
      : msg_(/*max_checks=*/3),
        driver_(DriverOptions{.owner = "node-a",
                              .retry = RetryPolicy{milliseconds(200), milliseconds(5000), 2, 0}},
                store_, transport_, clock_, ids_, crash_, {&msg_}, nullptr, &sink_),
        service_(store_, driver_, clock_, ids_, crash_, std::chrono::seconds(10),
                 std::chrono::seconds(5)) {}

  void Prepare(const std::string& gid) {
    BeginRequest req;
    req.gid = gid;
    req.mode = Mode::kMsg;
    req.query_url = "http://svc/msg/query";
    req.messages = {MessageSpec{"orders", "o1", R"({"n":1})", {{"h", "v"}}},
                    MessageSpec{"audit", "", R"({"n":2})", {}}};
    auto r = service_.Begin(req);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tx.status, TxStatus::kPrepared);
  }
  Transaction Load(const std::string& gid) { return store_.Load(gid, true).value(); }
  void AdvanceToNextAttempt(const std::string& gid) {
    clock_.Advance(Load(gid).next_attempt_at - clock_.Now());
  }

  testing::InMemoryStore store_;
  ScriptedTransport transport_;
  ScriptedSink sink_;
  testing::FakeClock clock_;
  testing::CountingIds ids_;
  testing::RecordingCrashPoints crash_;
  MsgProcessor msg_;
  TransactionDriver driver_;
  TransactionService service_;
};

TEST_F(MsgTest, NothingIsDeliveredBeforeSubmitThenEverythingWithStableIds) {
  Prepare("m1");
  ASSERT_TRUE(driver_.DriveNow("m1").ok());
  EXPECT_TRUE(sink_.delivered.empty());
  EXPECT_EQ(Load("m1").status, TxStatus::kPrepared);
  ASSERT_TRUE(service_.Submit("m1").ok());
  ASSERT_TRUE(driver_.DriveNow("m1").ok());
  EXPECT_EQ(Load("m1").status, TxStatus::kCommitted);
  ASSERT_EQ(sink_.delivered.size(), 2u);
  EXPECT_EQ(sink_.delivered[0].topic, "orders");
  EXPECT_EQ(sink_.delivered[0].key, "o1");
  EXPECT_EQ(sink_.delivered[0].value, R"({"n":1})");
  EXPECT_EQ(sink_.delivered[0].headers.at("h"), "v");
  EXPECT_EQ(sink_.delivered[0].headers.at("treaty-message-id"), "m1:msg-0");
  EXPECT_EQ(sink_.delivered[1].headers.at("treaty-message-id"), "m1:msg-1");
  EXPECT_TRUE(transport_.Calls().empty()) << "no check-back needed";
}

TEST_F(MsgTest, SubmitThatWaitsDeliversOnTheCallingThreadAndAnswersWithTheOutcome) {
  Prepare("mw");
  // The driver's threads are not started: only the caller can drive it.
  auto tx = service_.Submit("mw", /*wait=*/true);
  ASSERT_TRUE(tx.ok()) << tx.status().ToString();
  EXPECT_EQ(tx->status, TxStatus::kCommitted);
  EXPECT_EQ(sink_.delivered.size(), 2u);
  EXPECT_EQ(Load("mw").status, TxStatus::kCommitted);
}

TEST_F(MsgTest, SubmitThatWaitsReturnsAtARetryAndTheRetryDelivers) {
  Prepare("mr");
  sink_.failures = 1;
  auto tx = service_.Submit("mr", /*wait=*/true);
  ASSERT_TRUE(tx.ok()) << tx.status().ToString();
  EXPECT_EQ(tx->status, TxStatus::kCommitting) << "waits for a retry: the caller waits on";
  AdvanceToNextAttempt("mr");
  ASSERT_TRUE(driver_.DriveNow("mr").ok());
  EXPECT_EQ(Load("mr").status, TxStatus::kCommitted);
  EXPECT_EQ(sink_.delivered.size(), 2u);
}

TEST_F(MsgTest, CheckBackCommittedDelivers) {
  Prepare("m2");
  clock_.Advance(std::chrono::seconds(5));
  ASSERT_TRUE(driver_.DriveNow("m2").ok());
  EXPECT_EQ(transport_.Calls(), (std::vector<std::string>{"query/query"}));
  EXPECT_EQ(Load("m2").status, TxStatus::kCommitted);
  EXPECT_EQ(Load("m2").log[1].reason, "check-back: the service committed");
  EXPECT_EQ(sink_.delivered.size(), 2u);
}

TEST_F(MsgTest, CheckBackRolledBackDropsTheMessages) {
  transport_.Then("query", "query", ScriptedTransport::Refused("rolled back"));
  Prepare("m3");
  clock_.Advance(std::chrono::seconds(5));
  ASSERT_TRUE(driver_.DriveNow("m3").ok());
  EXPECT_EQ(Load("m3").status, TxStatus::kAborted);
  EXPECT_TRUE(sink_.delivered.empty());
  EXPECT_EQ(service_.Submit("m3").status().code(), Status::Code::kConflict);
}

TEST_F(MsgTest, UnknownCheckBacksAreAskedAgainThenFlagged) {
  transport_.Then("query", "query", ScriptedTransport::Unknown(503, "down"), 3);
  Prepare("m4");
  clock_.Advance(std::chrono::seconds(5));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(driver_.DriveNow("m4").ok());
    EXPECT_EQ(Load("m4").status, TxStatus::kPrepared);
    AdvanceToNextAttempt("m4");
  }
  EXPECT_EQ(Load("m4").attention, "check-back unanswered after 3 checks: HTTP 503: down");
  ASSERT_TRUE(driver_.DriveNow("m4").ok());
  EXPECT_EQ(Load("m4").status, TxStatus::kCommitted) << "still asked; the 4th answer commits";
  EXPECT_EQ(Load("m4").attention, "");
}

TEST_F(MsgTest, FailedDeliveriesAreRetriedUntilAcknowledged) {
  sink_.failures = 2;  // both messages fail once
  Prepare("m5");
  ASSERT_TRUE(service_.Submit("m5").ok());
  ASSERT_TRUE(driver_.DriveNow("m5").ok());
  EXPECT_EQ(Load("m5").status, TxStatus::kCommitting);
  AdvanceToNextAttempt("m5");
  ASSERT_TRUE(driver_.DriveNow("m5").ok());
  EXPECT_EQ(Load("m5").status, TxStatus::kCommitted);
  EXPECT_EQ(sink_.delivered.size(), 2u);
}

TEST_F(MsgTest, AbortDropsTheMessages) {
  Prepare("m6");
  ASSERT_TRUE(service_.Abort("m6", AbortBy::kService).ok());
  ASSERT_TRUE(driver_.DriveNow("m6").ok());
  EXPECT_EQ(Load("m6").status, TxStatus::kAborted);
  EXPECT_TRUE(sink_.delivered.empty());
}

}  // namespace
}  // namespace treaty::core
