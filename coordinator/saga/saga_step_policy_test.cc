// A saga step's output feeding later steps, and a step's own retry policy.

#include <gtest/gtest.h>

#include "coordinator/saga/saga_test_fixture.h"

namespace treaty::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::ScriptedTransport;

// The body the `n`th call of `branch`/`op` was sent.
std::string BodyOf(ScriptedTransport& t, const std::string& branch, const std::string& op,
                   int n = 0) {
  for (const BranchCall& c : t.RawCalls()) {
    if (c.branch_id == branch && c.op == op && n-- == 0) return c.body;
  }
  return "(not called)";
}

std::string PayloadOf(const std::string& body) {
  const std::string key = "\"payload\":";
  size_t at = body.find(key);
  return at == std::string::npos ? body
                                 : body.substr(at + key.size(), body.size() - at - key.size() - 1);
}

class SagaOutputTest : public SagaTest {};

TEST_F(SagaOutputTest, ALaterStepsPayloadIsBuiltFromAnEarlierStepsStoredOutput) {
  transport_.Then("reserve", "action",
                  ScriptedTransport::Answer(R"({"reservation_id":"r-42","n":2})"));
  BranchSpec pay = Step("pay", {"reserve"});
  pay.payload_json =
      R"({"reservation":"${steps.reserve.output.reservation_id}","note":"n=${steps.reserve.output.n}"})";
  std::string gid = Start({Step("reserve"), pay});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(PayloadOf(BodyOf(transport_, "pay", "action")),
            R"({"reservation":"r-42","note":"n=2"})");
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kCommitted);
  EXPECT_EQ(tx.FindOp("reserve", "action")->output_json, R"({"reservation_id":"r-42","n":2})");
  EXPECT_NE(tx.FindOp("pay", "action")->payload_json.find("${steps.reserve"), std::string::npos)
      << "the stored payload stays the template";
}

TEST_F(SagaOutputTest,
       AfterACrashTheNextCoordinatorBuildsFromTheStoredOutputWithoutRerunningTheStep) {
  transport_.Then("reserve", "action", ScriptedTransport::Answer(R"({"id":7})"));
  transport_.Then("pay", "action", ScriptedTransport::Unknown());  // then the coordinator dies
  BranchSpec pay = Step("pay", {"reserve"});
  pay.payload_json = R"({"id":"${steps.reserve.output.id}"})";
  std::string gid = Start({Step("reserve"), pay});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  // Another coordinator, with its own processor and nothing in memory, takes over.
  SagaProcessor saga;
  TransactionDriver other(DriverOptions{.owner = "node-b"}, store_, transport_, clock_, ids_,
                          crash_, {&saga});
  store_.ExpireLeases();
  clock_.Advance(seconds(1));
  ASSERT_TRUE(other.DriveNow(gid).ok());
  Strings calls = transport_.Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "reserve/action"), 1);
  EXPECT_EQ(PayloadOf(BodyOf(transport_, "pay", "action", 1)), R"({"id":7})");
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitted);
}

TEST_F(SagaOutputTest, ACompensationSeesItsOwnStepsOutputAndNullWhenTheActionNeverAnswered) {
  transport_.Then("reserve", "action", ScriptedTransport::Answer(R"({"id":7})"));
  transport_.Then("hold", "action", ScriptedTransport::Unknown());
  transport_.Then("pay", "action", ScriptedTransport::Refused("declined"));
  BranchSpec reserve = Step("reserve");
  reserve.op_settings["compensate"].payload_json = R"({"release":"${steps.reserve.output.id}"})";
  BranchSpec hold = Step("hold");
  hold.op_settings["compensate"].payload_json = R"({"hold":"${steps.hold.output.id}"})";
  std::string gid = Start({reserve, hold, Step("pay", {"reserve"})});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(Load(gid).status, TxStatus::kAborted);
  EXPECT_EQ(PayloadOf(BodyOf(transport_, "reserve", "compensate")), R"({"release":7})");
  EXPECT_EQ(PayloadOf(BodyOf(transport_, "hold", "compensate")), R"({"hold":null})");
  EXPECT_EQ(PayloadOf(BodyOf(transport_, "reserve", "action")), "{}")
      << "the action keeps the step's payload";
}

TEST_F(SagaOutputTest, AStepWhoseOutputLacksWhatALaterStepNamesAbortsTheSagaSayingWhat) {
  transport_.Then("reserve", "action", ScriptedTransport::Answer(R"({"other":1})"));
  BranchSpec pay = Step("pay", {"reserve"});
  pay.payload_json = R"({"id":"${steps.reserve.output.id}"})";
  std::string gid = Start({Step("reserve"), pay});
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kAborted);
  EXPECT_EQ(tx.reason, "step pay cannot be built: steps.reserve.output.id is missing");
  EXPECT_EQ(transport_.Calls(),
            (Strings{"reserve/action", "pay/compensate", "reserve/compensate"}));
}

TEST_F(SagaOutputTest, OnlyTheOutputsOfStepsItRunsAfterCanBeNamed) {
  BranchSpec b = Step("b");
  b.payload_json = R"({"id":"${steps.a.output.id}"})";
  BeginRequest req{
      .gid = "s9", .mode = Mode::kSaga, .branches = std::vector<BranchSpec>{Step("a"), b}};
  EXPECT_EQ(service_.Begin(req).status().message(),
            "step b: names the output of step a, which is not one it runs after (list it, or a "
            "step after it, in after)");
  BranchSpec own = Step("a");
  own.payload_json = R"({"id":"${steps.a.output.id}"})";
  req.branches = std::vector<BranchSpec>{own};
  EXPECT_EQ(service_.Begin(req).status().message(),
            "step a: names the output of step a, its own (only its compensation's payload can)");
  BranchSpec far = Step("c", {"b"});
  far.payload_json = R"({"id":"${steps.a.output.id}"})";
  req.branches = std::vector<BranchSpec>{Step("a"), Step("b", {"a"}), far};
  EXPECT_TRUE(service_.Begin(req).ok()) << "an ancestor through another step";
}

class SagaRetryTest : public SagaTest {};

TEST_F(SagaRetryTest, AnActionThatUsesUpItsAttemptsFailsTheSagaWhichCompensates) {
  transport_.Then("pay", "action", ScriptedTransport::Unknown(503, "busy"), 10);
  BranchSpec pay = Step("pay", {"a"});
  pay.retry = OpRetry{.attempts = 3, .backoff = milliseconds(100)};
  std::string gid = Start({Step("a"), pay});
  for (int i = 0; i < 10 && Load(gid).status == TxStatus::kActive; ++i) {
    ASSERT_TRUE(driver_.DriveNow(gid).ok());
    clock_.Advance(Load(gid).next_attempt_at - clock_.Now());
  }
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kAborted);
  EXPECT_EQ(tx.reason, "step pay gave up after 3 attempts: HTTP 503: busy");
  Strings calls = transport_.Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "pay/action"), 3);
  EXPECT_EQ(calls.back(), "a/compensate");
}

TEST_F(SagaRetryTest, EachStepWaitsItsOwnBackoff) {
  // fast retries after 1 s, slow after 5 s (treaty.yaml's would be 200 ms for both).
  transport_.Then("fast", "action", ScriptedTransport::Unknown(), 2);
  transport_.Then("slow", "action", ScriptedTransport::Unknown());
  BranchSpec fast = Step("fast");
  fast.retry = OpRetry{.backoff = seconds(1), .max_backoff = seconds(1)};
  BranchSpec slow = Step("slow");
  slow.retry = OpRetry{.backoff = seconds(5), .max_backoff = seconds(5)};
  std::string gid = Start({fast, slow});
  const TimePoint t0 = clock_.Now();
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(Load(gid).next_attempt_at, t0 + seconds(1));
  clock_.Advance(seconds(1));
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  EXPECT_EQ(transport_.Calls(), (Strings{"fast/action", "slow/action", "fast/action"}))
      << "slow is not due before 5 s";
  EXPECT_EQ(Load(gid).next_attempt_at, t0 + seconds(2));
  clock_.Advance(seconds(4));
  ASSERT_TRUE(driver_.DriveNow(gid).ok());
  Strings calls = transport_.Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "slow/action"), 2);
  EXPECT_EQ(Load(gid).status, TxStatus::kCommitted);
}

TEST_F(SagaRetryTest, ACompensationKeepsRetryingAndRaisesAttentionAtItsOwnAttempts) {
  transport_.Then("pay", "action", ScriptedTransport::Refused("declined"));
  transport_.Then("a", "compensate", ScriptedTransport::Unknown(503, "down"), 4);
  BranchSpec a = Step("a");
  a.op_settings["compensate"].retry = OpRetry{.attempts = 2, .backoff = milliseconds(50)};
  a.op_settings["compensate"].timeout = seconds(7);
  std::string gid = Start({a, Step("pay", {"a"})});
  EXPECT_EQ(Load(gid).FindOp("a", "compensate")->timeout, seconds(7));
  EXPECT_EQ(Load(gid).FindOp("a", "action")->timeout, std::nullopt);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(driver_.DriveNow(gid).ok());
    clock_.Advance(Load(gid).next_attempt_at - clock_.Now());
  }
  Transaction tx = Load(gid);
  EXPECT_EQ(tx.status, TxStatus::kAborting);
  EXPECT_EQ(tx.attention, "step a compensation still unanswered after 2 attempts: HTTP 503: down");
  for (int i = 0; i < 5 && Load(gid).status != TxStatus::kAborted; ++i) {
    ASSERT_TRUE(driver_.DriveNow(gid).ok());
    clock_.Advance(Load(gid).next_attempt_at - clock_.Now());
  }
  EXPECT_EQ(Load(gid).status, TxStatus::kAborted) << "compensations never give up";
  EXPECT_EQ(Load(gid).attention, "");
}

TEST_F(SagaRetryTest, SettingsForAnOpNeedTheBranchToHaveThatOp) {
  BranchSpec b = Step("a", {}, /*compensable=*/false);
  b.op_settings["compensate"].timeout = seconds(1);
  BeginRequest req{.gid = "s8", .mode = Mode::kSaga, .branches = std::vector<BranchSpec>{b}};
  EXPECT_EQ(service_.Begin(req).status().message(),
            "branch a: settings for compensate, which the branch has no URL for");
}

}  // namespace
}  // namespace treaty::core
