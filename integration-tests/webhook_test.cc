// Completion webhooks (#22) through a real treatyd: a transaction started with "notify" gets its
// event POSTed, signed with HMAC-SHA256 over the timestamp and body, retried with backoff until
// the receiver answers 2xx, also across a treatyd killed and restarted in between. The receiver
// (and the participant) are recording HTTP servers in the test process.

#include <Poco/DigestEngine.h>
#include <Poco/HMACEngine.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/SHA2Engine.h>
#include <gtest/gtest.h>

#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/recording_server.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

constexpr const char* kSecret = "whsec-test-0123456789";

class Sha256 : public Poco::SHA2Engine {
 public:
  enum { BLOCK_SIZE = 64, DIGEST_SIZE = 32 };
  Sha256() : Poco::SHA2Engine(Poco::SHA2Engine::SHA_256) {}
};

// The signature a receiver expects for `body` at time `t` (the documented recipe).
std::string Expected(const std::string& t, const std::string& body) {
  Poco::HMACEngine<Sha256> hmac(kSecret);
  hmac.update(t + "." + body);
  return "t=" + t + ",v1=" + Poco::DigestEngine::digestToHex(hmac.digest());
}

class WebhookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = TreatyStack::Start(StackOptions{
        .treatyd_extra_yaml = std::string("webhooks: { secret: ") + kSecret +
                              ", poll_interval: 50ms, max_backoff: 500ms, timeout: 2s }\n"});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
  }

  std::string Body(const std::string& gid, const std::string& notify) {
    std::string p = participant_.base_url();
    return R"({"gid":")" + gid + R"(","mode":"2pc","wait":true,"notify":)" + notify +
           R"(,"branches":[{"id":"a","prepare":")" + p + R"(/prepare","commit":")" + p +
           R"(/commit","abort":")" + p + R"(/abort"}]})";
  }

  std::string Query(const std::string& sql) {
    auto v = stack_->pg().QueryValue("treaty", sql);
    return v.ok() ? *v : "error: " + v.status().message();
  }

  RecordingServer participant_;
  RecordingServer receiver_;
  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(WebhookTest, DeliveredSignedRetriedAndAcrossARestart) {
  receiver_.AnswerWith(503, "{}");  // down, as far as treatyd can tell
  const std::string notify =
      R"({"url":")" + receiver_.base_url() + R"(/hooks/treaty","events":["committed","aborted"]})";
  auto r =
      HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions", Body("hook-1", notify));
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  EXPECT_NE(r->body.find("\"committed\""), std::string::npos) << r->body;

  // Refused twice (at least): retried, and still pending.
  ASSERT_TRUE(receiver_.WaitFor([](const auto& requests) { return requests.size() >= 2; }));
  std::string row;
  ASSERT_TRUE(receiver_.WaitFor(
      [&](const auto&) {
        row = Query(
            "SELECT attempts >= 2 AND delivered_at IS NULL AND last_error = 'HTTP 503' "
            "FROM treaty.webhook_deliveries WHERE gid = 'hook-1' AND event = 'committed'");
        return row == "t";
      },
      std::chrono::seconds(30)))
      << row;

  // treatyd dies with the delivery pending; the receiver comes back; a new treatyd delivers it.
  ASSERT_TRUE(stack_->treatyd().Kill().ok());
  const size_t before = receiver_.Requests().size();
  receiver_.AnswerWith(200, "{}");
  ASSERT_TRUE(stack_->RestartTreatyd().ok());
  ASSERT_TRUE(receiver_.WaitFor([&](const auto& requests) { return requests.size() > before; }));
  std::string delivered;
  ASSERT_TRUE(receiver_.WaitFor(
      [&](const auto&) {
        delivered = Query(
            "SELECT delivered_at IS NOT NULL FROM treaty.webhook_deliveries "
            "WHERE gid = 'hook-1' AND event = 'committed'");
        return delivered == "t";
      },
      std::chrono::seconds(30)))
      << delivered;

  // What the receiver got: the event, signed over the timestamp and the body.
  const RecordedRequest last = receiver_.Requests().back();
  EXPECT_EQ(last.method, "POST");
  EXPECT_EQ(last.path, "/hooks/treaty");
  EXPECT_EQ(last.headers.at("treaty-event"), "committed");
  EXPECT_EQ(last.headers.at("treaty-gid"), "hook-1");
  const std::string signature = last.headers.at("treaty-signature");
  ASSERT_EQ(signature.rfind("t=", 0), 0u) << signature;
  const std::string t = signature.substr(2, signature.find(',') - 2);
  EXPECT_EQ(signature, Expected(t, last.body));
  EXPECT_NE(signature, Expected(t, last.body + " ")) << "the signature covers the body";
  Poco::JSON::Parser parser;
  auto body = parser.parse(last.body).extract<Poco::JSON::Object::Ptr>();
  EXPECT_EQ(body->getValue<std::string>("gid"), "hook-1");
  EXPECT_EQ(body->getValue<std::string>("event"), "committed");
  EXPECT_EQ(body->getValue<std::string>("status"), "committed");
  EXPECT_EQ(body->getValue<std::string>("trace_id").size(), 32u);
  // Every attempt carried the same event.
  for (const RecordedRequest& req : receiver_.Requests()) {
    EXPECT_EQ(req.headers.at("treaty-gid"), "hook-1");
  }
}

TEST_F(WebhookTest, OnlyTheEventsAskedForAndOnlyToAllowedUrls) {
  // Aborted (the participant refuses prepare), but only committed was asked for: no delivery.
  participant_.AnswerPathWith("/prepare", 409, R"({"error":{"message":"no"}})");
  const std::string committed_only =
      R"({"url":")" + receiver_.base_url() + R"(/h","events":["committed"]})";
  auto r = HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions",
                    Body("hook-2", committed_only));
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : "");
  EXPECT_NE(r->body.find("\"aborted\""), std::string::npos) << r->body;
  // Asked for aborted: delivered (the later transaction's row shows the earlier one had none).
  const std::string aborted = R"({"url":")" + receiver_.base_url() + R"(/h","events":["aborted"]})";
  r = HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions", Body("hook-3", aborted));
  ASSERT_TRUE(r.ok() && r->status == 200);
  ASSERT_TRUE(receiver_.WaitFor([](const auto& requests) { return !requests.empty(); }));
  EXPECT_EQ(Query("SELECT string_agg(gid || ':' || event, ',') FROM treaty.webhook_deliveries"),
            "hook-3:aborted");
  for (const RecordedRequest& req : receiver_.Requests()) {
    EXPECT_EQ(req.headers.at("treaty-gid"), "hook-3");
  }

  // Bad notify: 400 naming the field; nothing stored.
  for (const auto& [notify, field] : std::vector<std::pair<std::string, std::string>>{
           {R"({"url":"http://example.com/h"})", "notify.url"},  // not in participants.allow
           {R"({"url":")" + receiver_.base_url() + R"(","events":["done"]})", "notify.events[0]"},
           {R"({"events":["aborted"]})", "notify.url"},
           {R"("http://127.0.0.1/h")", "notify"}}) {
    auto bad = HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions",
                        Body("hook-bad", notify));
    ASSERT_TRUE(bad.ok());
    EXPECT_EQ(bad->status, 400) << notify;
    EXPECT_NE(bad->body.find("\"field\":\"" + field + "\""), std::string::npos) << bad->body;
  }
  EXPECT_EQ(Query("SELECT count(*) FROM treaty.transactions WHERE gid = 'hook-bad'"), "0");
}

}  // namespace
}  // namespace treaty::harness
