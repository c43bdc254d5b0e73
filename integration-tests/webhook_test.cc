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

#include <fstream>

#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/recording_server.h"
#include "integration-tests/harness/temp_dir.h"
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

// The delivery is a call of the transaction's trace: its traceparent names the trace the
// transaction was started with and a span of its own (neither the caller's nor the
// transaction's), its tracestate is passed on.
TEST_F(WebhookTest, TheDeliveryCarriesTheTransactionsTraceparent) {
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string caller_span = "00f067aa0ba902b7";
  const std::string notify =
      R"({"url":")" + receiver_.base_url() + R"(/hooks/traced","events":["committed"]})";
  auto r = HttpCall(
      "POST", stack_->treatyd().base_url() + "/v1/transactions", Body("hook-traced", notify),
      http::CallOptions{.headers = {{"traceparent", "00-" + trace + "-" + caller_span + "-01"},
                                    {"tracestate", "vendor=w"}}});
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  auto details = HttpCall("GET", stack_->treatyd().base_url() + "/v1/transactions/hook-traced");
  ASSERT_TRUE(details.ok() && details->status == 200);
  Poco::JSON::Parser parser;
  auto answer = parser.parse(details->body).extract<Poco::JSON::Object::Ptr>();
  const std::string own = answer->optValue<std::string>("traceparent", "");
  ASSERT_EQ(own.size(), 55u) << details->body;
  const std::string transaction_span = own.substr(36, 16);

  ASSERT_TRUE(receiver_.WaitFor([](const auto& requests) { return !requests.empty(); }));
  const RecordedRequest hook = receiver_.Requests().front();
  ASSERT_EQ(hook.headers.count("traceparent"), 1u) << "the delivery carries no traceparent";
  const std::string tp = hook.headers.at("traceparent");
  ASSERT_EQ(tp.size(), 55u) << tp;
  EXPECT_EQ(tp.substr(0, 3), "00-") << tp;
  EXPECT_EQ(tp.substr(3, 32), trace) << tp;
  const std::string span = tp.substr(36, 16);
  EXPECT_EQ(span.find_first_not_of("0123456789abcdef"), std::string::npos) << tp;
  EXPECT_NE(span.find_first_not_of('0'), std::string::npos) << tp;
  EXPECT_NE(span, caller_span) << tp;
  EXPECT_NE(span, transaction_span) << tp;
  EXPECT_EQ(tp.substr(52), "-01") << tp;
  EXPECT_EQ(hook.headers.count("tracestate") ? hook.headers.at("tracestate") : "", "vendor=w");
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

// Retention (docs/recovery.md, "Retention"): a purged transaction's delivered webhooks go with
// it; an undelivered one stays, is still delivered, is counted meanwhile, and goes once it has
// been delivered longer ago than the history. A young transaction's deliveries stay. Rows are
// made old the honest way: their times are moved back in SQL (the purge reads the store's
// clock).
TEST(WebhookRetentionTest, DeliveredWebhooksArePurgedWithTheirTransactionUndeliveredOnesStay) {
  RecordingServer participant;
  RecordingServer receiver;
  receiver.AnswerPathWith("/down", 503);
  auto s = TreatyStack::Start(StackOptions{
      .treatyd_extra_yaml = std::string("webhooks: { secret: ") + kSecret +
                            ", poll_interval: 50ms, max_backoff: 500ms, timeout: 2s }\n"
                            "retention: { history: 1h, batch: 2, interval: 200ms }\n"});
  ASSERT_TRUE(s.ok()) << s.status().message();
  std::unique_ptr<TreatyStack> stack = std::move(*s);
  auto query = [&](const std::string& sql) {
    auto v = stack->pg().QueryValue("treaty", sql);
    return v.ok() ? *v : "error: " + v.status().message();
  };
  auto start = [&](const std::string& gid, const std::string& path) {
    const std::string p = participant.base_url();
    auto r =
        HttpCall("POST", stack->treatyd().base_url() + "/v1/transactions",
                 R"({"gid":")" + gid + R"(","mode":"2pc","wait":true,"notify":{"url":")" +
                     receiver.base_url() + path + R"("},"branches":[{"id":"a","prepare":")" + p +
                     R"(/prepare","commit":")" + p + R"(/commit","abort":")" + p + R"(/abort"}]})");
    ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  };
  start("old-delivered", "/up");
  start("old-undelivered", "/down");
  start("young-delivered", "/up");
  auto state = [&] {
    return query(
        "SELECT string_agg(gid || ':' || (delivered_at IS NOT NULL)::text, ',' ORDER BY gid) "
        "FROM treaty.webhook_deliveries");
  };
  std::string seen;
  ASSERT_TRUE(WaitUntil(
      [&] {
        seen = state();
        return seen == "old-delivered:true,old-undelivered:false,young-delivered:true";
      },
      std::chrono::seconds(60)))
      << seen;
  auto metric = [&](const std::string& name) {
    auto r = HttpCall("GET", stack->treatyd().base_url() + "/metrics");
    if (!r.ok()) return std::string("unreachable");
    size_t at = r->body.find("\n" + name + " ");
    if (at == std::string::npos) return std::string("missing");
    at += name.size() + 2;
    return r->body.substr(at, r->body.find('\n', at) - at);
  };
  EXPECT_EQ(metric("treaty_webhook_undelivered"), "1");

  // Two hours old: the transactions (and their deliveries' creation). The delivered one's
  // delivery stays recent: it goes with its transaction, not by its own age.
  ASSERT_OK(stack->pg().Execute(
      "treaty",
      "UPDATE treaty.transactions SET updated_at = now() - interval '2 hours' "
      "WHERE gid LIKE 'old-%'; "
      "UPDATE treaty.webhook_deliveries SET created_at = now() - interval '2 hours' "
      "WHERE gid LIKE 'old-%'"));
  ASSERT_TRUE(WaitUntil(
      [&] {
        return query("SELECT count(*) FROM treaty.transactions WHERE gid LIKE 'old-%'") == "0";
      },
      std::chrono::seconds(60)))
      << "the old transactions were never purged";
  // The delivered one went with its transaction; the undelivered one stays, still retried.
  EXPECT_EQ(state(), "old-undelivered:false,young-delivered:true");
  const std::string attempts =
      query("SELECT attempts FROM treaty.webhook_deliveries WHERE gid = 'old-undelivered'");
  ASSERT_TRUE(WaitUntil(
      [&] {
        return query(
                   "SELECT attempts FROM treaty.webhook_deliveries "
                   "WHERE gid = 'old-undelivered'") != attempts;
      },
      std::chrono::seconds(60)))
      << "the undelivered webhook is no longer retried once its transaction is purged";
  EXPECT_EQ(metric("treaty_webhook_undelivered"), "1");

  // Its receiver comes back: delivered, with the transaction's outcome although the
  // transaction is gone.
  receiver.AnswerPathWith("/down", 200);
  ASSERT_TRUE(WaitUntil([&] { return state() == "old-undelivered:true,young-delivered:true"; },
                        std::chrono::seconds(60)))
      << state();
  bool got = false;
  for (const RecordedRequest& q : receiver.Requests()) {
    if (q.path != "/down") continue;
    Poco::JSON::Parser parser;
    auto body = parser.parse(q.body).extract<Poco::JSON::Object::Ptr>();
    if (body->optValue<std::string>("gid", "") == "old-undelivered" &&
        body->optValue<std::string>("status", "") == "committed") {
      got = true;
    }
  }
  EXPECT_TRUE(got) << "the receiver never got the purged transaction's outcome";
  EXPECT_EQ(metric("treaty_webhook_undelivered"), "0");
  // Delivered, but just now: kept for the history. Delivered two hours ago: purged.
  EXPECT_EQ(state(), "old-undelivered:true,young-delivered:true");
  ASSERT_OK(stack->pg().Execute("treaty",
                                "UPDATE treaty.webhook_deliveries SET delivered_at = delivered_at "
                                "- interval '2 hours' WHERE gid = 'old-undelivered'"));
  ASSERT_TRUE(
      WaitUntil([&] { return state() == "young-delivered:true"; }, std::chrono::seconds(60)))
      << state();
  EXPECT_EQ(metric("treaty_retention_purged_rows_total{table=\"webhook_deliveries\"}"), "2");
}

// A saga definition's notify: every transaction started by name gets it, unless its start
// request has a notify of its own, which wins.
TEST(SagaWebhookTest, ASagaStartedByNameIsNotifiedByItsDefinitionUnlessTheRequestSaysOtherwise) {
  RecordingServer participant;
  RecordingServer receiver;
  auto dir = TempDir::Create("saga-notify");
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  std::ofstream(dir->File("hooked.yaml"))
      << "saga: hooked\n"
         "notify: { url: \"${env.HOOKS_URL}/from-definition\", events: [committed] }\n"
         "steps:\n"
         "  - name: one\n"
         "    action: "
      << participant.base_url() << "/one\n";
  auto s = TreatyStack::Start(StackOptions{
      .treatyd_extra_yaml = std::string("webhooks: { secret: ") + kSecret +
                            ", poll_interval: 50ms, max_backoff: 500ms, timeout: 2s }\n",
      .treatyd_env = {{"HOOKS_URL", receiver.base_url()}},
      .saga_files = {dir->File("*.yaml")}});
  ASSERT_TRUE(s.ok()) << s.status().message();
  std::unique_ptr<TreatyStack> stack = std::move(*s);

  auto r = HttpCall("POST", stack->treatyd().base_url() + "/v1/sagas/hooked",
                    R"({"gid":"saga-hook-1","wait":true})");
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  EXPECT_NE(r->body.find("\"committed\""), std::string::npos) << r->body;
  ASSERT_TRUE(receiver.WaitFor([](const auto& requests) { return !requests.empty(); }));
  const RecordedRequest hook = receiver.Requests().front();
  EXPECT_EQ(hook.path, "/from-definition");
  EXPECT_EQ(hook.headers.at("treaty-gid"), "saga-hook-1");
  EXPECT_EQ(hook.headers.at("treaty-event"), "committed");
  const std::string signature = hook.headers.at("treaty-signature");
  ASSERT_EQ(signature.rfind("t=", 0), 0u) << signature;
  EXPECT_EQ(signature, Expected(signature.substr(2, signature.find(',') - 2), hook.body));

  // The request's own notify wins over the definition's.
  r = HttpCall("POST", stack->treatyd().base_url() + "/v1/sagas/hooked",
               R"({"gid":"saga-hook-2","wait":true,"notify":{"url":")" + receiver.base_url() +
                   R"(/from-request"}})");
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  ASSERT_TRUE(receiver.WaitFor([](const auto& requests) {
    for (const RecordedRequest& q : requests) {
      if (q.headers.count("treaty-gid") && q.headers.at("treaty-gid") == "saga-hook-2") return true;
    }
    return false;
  }));
  for (const RecordedRequest& q : receiver.Requests()) {
    if (q.headers.at("treaty-gid") == "saga-hook-2") {
      EXPECT_EQ(q.path, "/from-request");
    }
  }
}

}  // namespace
}  // namespace treaty::harness
