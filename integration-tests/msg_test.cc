// Transactional messages end to end: treatyd, order-svc (the service that prepares, commits
// locally and submits, and answers check-backs), the dev broker, and a separate consumer process
// reading the topics.

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

class MsgTest : public ::testing::Test {
 protected:
  void SetUp() override { Boot({}); }

  void Boot(std::vector<std::pair<std::string, std::string>> env) {
    stack_.reset();
    auto dir = TempDir::Create("msg-test");
    ASSERT_TRUE(dir.ok());
    dir_ = std::move(*dir);
    env.emplace_back("TREATY_TIMEOUTS_MSG_CHECK_BACK", "1s");
    env.emplace_back("TREATY_KAFKA_DELIVERY_TIMEOUT", "2s");
    auto s = TreatyStack::Start(StackOptions{.with_broker = true, .treatyd_env = std::move(env)});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
  }

  // Reads `count` messages of `topic` (and, for 1.5s more, any beyond) in another process.
  std::vector<std::string> Read(const std::string& topic, int count, bool allow_extra = false) {
    auto lines = stack_->broker()->Consume(topic, count, allow_extra, /*headers=*/true);
    EXPECT_TRUE(lines.ok()) << lines.status().message();
    return lines.ok() ? *lines : std::vector<std::string>{};
  }

  void Produce(const std::string& topic, const std::string& value) {
    auto p = Process::Start(
        ProcessSpec{.name = "producer",
                    .argv = {kKafkaProbePath, "produce", "--bootstrap",
                             stack_->broker()->bootstrap(), "--topic", topic, "--value", value},
                    .log_path = dir_.File("producer")});
    ASSERT_TRUE(p.ok());
    auto code = (*p)->Wait(std::chrono::seconds(60));
    ASSERT_TRUE(code.ok() && *code == 0);
  }

  Result<HttpReply> MsgOrder(const std::string& body) {
    return HttpCall("POST", TreatyStack::Url(stack_->orders(), "/msg/orders"), body,
                    std::chrono::seconds(30));
  }

  int Orders(const std::string& gid) { return stack_->OrderCount(gid).value(); }

  TempDir dir_;
  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(MsgTest, SubmitDeliversEveryMessageWithItsId) {
  std::string base = stack_->treatyd().base_url();
  std::string query = TreatyStack::Url(stack_->orders(), "/msg/query");
  auto prepared =
      HttpCall("POST", base + "/v1/transactions",
               R"({"gid":"m1","mode":"msg","query":")" + query +
                   R"(","messages":[)"
                   R"({"topic":"t.one","key":"k1","payload":{"n":1}},)"
                   R"({"topic":"t.one","key":"k1","payload":{"n":2},"headers":{"source":"test"}},)"
                   R"({"topic":"t.two","key":"k2","payload":{"n":3}}]})");
  ASSERT_TRUE(prepared.ok() && prepared->status == 201) << (prepared.ok() ? prepared->body : "");
  EXPECT_EQ(ParseObject(prepared->body)->getValue<std::string>("status"), "prepared");
  auto submitted = HttpCall("POST", base + "/v1/transactions/m1/submit", R"({"wait":true})");
  ASSERT_TRUE(submitted.ok() && submitted->status == 200)
      << (submitted.ok() ? submitted->body : "");
  EXPECT_EQ(ParseObject(submitted->body)->getValue<std::string>("status"), "committed");

  auto one = Read("t.one", 2);
  ASSERT_EQ(one.size(), 2u);
  // The value is the payload as JSON (stored as jsonb, so spacing is normalized).
  EXPECT_EQ(one[0].substr(0, one[0].find('\t', 3)), "k1\t{\"n\": 1}");
  EXPECT_NE(one[0].find("treaty-message-id=m1:msg-0;"), std::string::npos) << one[0];
  EXPECT_NE(one[1].find("treaty-message-id=m1:msg-1;"), std::string::npos) << one[1];
  EXPECT_NE(one[1].find("source=test;"), std::string::npos) << one[1];
  auto two = Read("t.two", 1);
  ASSERT_EQ(two.size(), 1u);
  EXPECT_NE(two[0].find("treaty-message-id=m1:msg-2;"), std::string::npos) << two[0];

  // Bad input names the field; nothing is stored.
  auto bad = HttpCall("POST", base + "/v1/transactions",
                      R"({"mode":"msg","messages":[{"topic":"t","payload":1}]})");
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(ParseObject(bad->body)->getObject("error")->getValue<std::string>("field"), "query");
  bad = HttpCall("POST", base + "/v1/transactions",
                 R"({"mode":"msg","query":")" + query + R"(","messages":[{"payload":1}]})");
  EXPECT_EQ(ParseObject(bad->body)->getObject("error")->getValue<std::string>("field"),
            "messages[0].topic");
}

TEST_F(MsgTest, ServiceCrashAfterItsLocalCommitIsResolvedByCheckBack) {
  auto r = MsgOrder(R"({"gid":"crash-after","sku":"A1","qty":2,"crash":"after_local_commit"})");
  EXPECT_FALSE(r.ok() && r->status == 200) << "the service was to die before answering";
  ASSERT_TRUE(stack_->orders().process().Wait(std::chrono::seconds(10)).ok());
  EXPECT_EQ(stack_->StatusOf("crash-after"), "prepared") << "never submitted";
  ASSERT_OK(stack_->orders().Restart());  // its query endpoint answers again
  EXPECT_EQ(stack_->WaitFinal("crash-after"), "committed");
  auto tx = ParseObject(
      HttpCall("GET", stack_->treatyd().base_url() + "/v1/transactions/crash-after")->body);
  EXPECT_EQ(tx->getValue<std::string>("reason"), "every message delivered");
  EXPECT_EQ(Orders("crash-after"), 1);
  auto events = Read("orders.events", 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].find("treaty-gid=crash-after;"), std::string::npos) << events[0];
}

TEST_F(MsgTest, ServiceCrashBeforeItsLocalCommitDeliversNothing) {
  auto r = MsgOrder(R"({"gid":"crash-before","sku":"A1","qty":2,"crash":"before_local_commit"})");
  ASSERT_TRUE(stack_->orders().process().Wait(std::chrono::seconds(10)).ok());
  ASSERT_OK(stack_->orders().Restart());
  EXPECT_EQ(stack_->WaitFinal("crash-before"), "aborted");
  EXPECT_EQ(Orders("crash-before"), 0);
  // A late attempt to commit the local transaction cannot slip through any more.
  auto late = MsgOrder(R"({"gid":"crash-before","sku":"A1","qty":2,"resume":true})");
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->status, 409) << late->body;
  EXPECT_EQ(Orders("crash-before"), 0);
  // Nothing reached the topic: the first message there is one produced afterwards.
  Produce("orders.events", "sentinel");
  auto events = Read("orders.events", 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].find("sentinel"), std::string::npos) << events[0];
}

TEST_F(MsgTest, ABrokerOutageDelaysDeliveryAndTheInboxAbsorbsDuplicates) {
  ASSERT_OK(stack_->broker()->Command("down 1"));
  auto r = MsgOrder(R"({"gid":"outage","sku":"A1","qty":3})");
  ASSERT_TRUE(r.ok()) << r.status().message();
  // Decided, and a delivery attempt failed.
  auto failed_delivery = [&] {
    auto r = HttpCall("GET", stack_->treatyd().base_url() + "/v1/transactions/outage");
    if (!r.ok() || r->status != 200) return false;
    auto branches = ParseObject(r->body)->getArray("branches");
    for (size_t i = 0; i < branches->size(); ++i) {
      auto b = branches->getObject(i);
      if (b->getValue<std::string>("op") == "publish" && b->getValue<int>("attempts") >= 1 &&
          b->getValue<std::string>("status") == "pending") {
        return true;
      }
    }
    return false;
  };
  ASSERT_TRUE(WaitUntil(failed_delivery, std::chrono::seconds(60)))
      << "no failed delivery attempt was recorded";
  EXPECT_EQ(stack_->StatusOf("outage"), "committing");
  ASSERT_OK(stack_->broker()->Command("up 1"));
  EXPECT_EQ(stack_->WaitFinal("outage"), "committed");
  auto events = Read("orders.events", 1, /*allow_extra=*/true);
  ASSERT_GE(events.size(), 1u);
  // inventory-svc counted the order once, however often it arrived.
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto v = stack_->pg().QueryValue("inventory", "SELECT coalesce(sum(placed), 0) FROM sales");
        return v.ok() && *v == "3";
      },
      std::chrono::seconds(60)));
  EXPECT_EQ(stack_->pg()
                .QueryValue("inventory",
                            "SELECT count(*) FROM treaty_inbox WHERE event_id = 'outage:msg-0'")
                .value(),
            "1");
}

// A message accepted by a treatyd before store schema 4 (a row per op in treaty.branches) and
// not yet delivered is delivered after the upgrade with its key and headers.
TEST_F(MsgTest, AMessageStoredBeforeTheSchemaUpgradeIsDeliveredWithItsKeyAndHeaders) {
  auto stopped = stack_->treatyd().Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status().message();
  ASSERT_OK(stack_->RecreateStoreAt(3));
  ASSERT_OK(stack_->pg().Execute(
      "treaty",
      "INSERT INTO treaty.transactions (gid, mode, status, request, request_digest, submitted, "
      "reason, deadline, next_attempt_at) VALUES ('upgrade-msg', 'msg', 'committing', '{}', 'd1', "
      "true, 'submitted', now() + interval '1 hour', now());"
      "INSERT INTO treaty.branches (gid, branch_id, op, position, url, payload, msg_key, "
      "msg_headers, status, attempts) VALUES ('upgrade-msg', 'msg-0', 'publish', 0, "
      "'kafka:t.upgrade', '{\"n\": 9}', 'k9', '{\"source\": \"v3\"}', 'pending', 0);"));

  ASSERT_OK(stack_->RestartTreatyd({{"TREATY_TIMEOUTS_MSG_CHECK_BACK", "1s"}}));
  EXPECT_EQ(stack_->WaitFinal("upgrade-msg"), "committed");
  auto messages = Read("t.upgrade", 1);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].substr(0, messages[0].find('\t', 3)), "k9\t{\"n\": 9}");
  EXPECT_NE(messages[0].find("source=v3;"), std::string::npos) << messages[0];
  EXPECT_NE(messages[0].find("treaty-message-id=upgrade-msg:msg-0;"), std::string::npos)
      << messages[0];
}

// During a rolling upgrade a treatyd from before store schema 5 still writes a message's topic
// as the url "kafka:<topic>"; a current treatyd delivers such a message to that topic.
TEST_F(MsgTest, AMessageWrittenByAnOlderTreatydBesideThisOneIsDeliveredToItsTopic) {
  auto stopped = stack_->treatyd().Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status().message();
  ASSERT_OK(stack_->pg().Execute(
      "treaty",
      "INSERT INTO treaty.transactions (gid, mode, status, request, request_digest, submitted, "
      "reason, deadline, next_attempt_at, ops, op_state) VALUES ('mixed-msg', 'msg', "
      "'committing', '{}', 'd2', true, 'submitted', now() + interval '1 hour', now(), "
      "'[{\"branch_id\": \"msg-0\", \"op\": \"publish\", \"position\": 1000, "
      "\"url\": \"kafka:t.mixed\", \"payload\": {\"n\": 7}, \"msg_key\": \"k7\"}]', "
      "'{\"msg-0/publish\": {\"status\": \"pending\", \"attempts\": 0}}');"));

  ASSERT_OK(stack_->RestartTreatyd({{"TREATY_TIMEOUTS_MSG_CHECK_BACK", "1s"}}));
  EXPECT_EQ(stack_->WaitFinal("mixed-msg"), "committed");
  auto messages = Read("t.mixed", 1);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].substr(0, messages[0].find('\t', 3)), "k7\t{\"n\": 7}");
  EXPECT_NE(messages[0].find("treaty-message-id=mixed-msg:msg-0;"), std::string::npos)
      << messages[0];
}

class MsgCrashTest : public MsgTest {
 protected:
  void SetUp() override { Boot({{"TREATY_CRASH_POINT", "after_decision"}}); }
};

TEST_F(MsgCrashTest, CoordinatorKilledAfterSubmitBeforeDeliveryDeliversAfterRestart) {
  MsgOrder(R"({"gid":"coord-crash","sku":"A1","qty":1})");  // treatyd dies inside the submit
  ASSERT_TRUE(stack_->treatyd().process().Wait(std::chrono::seconds(30)).ok());
  ASSERT_OK(stack_->RestartTreatyd({{"TREATY_TIMEOUTS_MSG_CHECK_BACK", "1s"}}));
  EXPECT_EQ(stack_->WaitFinal("coord-crash"), "committed");
  auto events = Read("orders.events", 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_NE(events[0].find("treaty-gid=coord-crash;"), std::string::npos) << events[0];
}

}  // namespace
}  // namespace treaty::harness
