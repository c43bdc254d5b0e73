// Trace context and header passthrough (#22) through a real treatyd: a starting request's
// traceparent, tracestate and propagate_headers reach every branch call (each call its own child
// span of the transaction's), are kept with the transaction, and secret values are never shown.
// The participant is a recording HTTP server in the test process.

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/recording_server.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

constexpr const char* kParentTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr const char* kParentSpan = "00f067aa0ba902b7";

std::string At(const std::map<std::string, std::string>& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? "" : it->second;
}

bool LowerHex(const std::string& s, size_t n) {
  return s.size() == n && s.find_first_not_of("0123456789abcdef") == std::string::npos &&
         s.find_first_not_of('0') != std::string::npos;
}

struct TraceParent {
  std::string trace_id, span_id, flags;
};
TraceParent Split(const std::string& h) {
  if (h.size() != 55 || h.substr(0, 3) != "00-") return {};
  return {h.substr(3, 32), h.substr(36, 16), h.substr(53, 2)};
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = TreatyStack::Start(StackOptions{
        .treatyd_extra_yaml = "propagate_headers: [authorization, X-Tenant-Id, x-api-key]\n"
                              "secret_headers: [x-api-key]\n"
                              "log: { level: debug }\n"
                              "tracing: { otlp_endpoint: \"" +
                              collector_.base_url() + "/v1/traces\", flush_interval: 50ms }\n"});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
  }

  // A 2PC transaction of two branches, both at the recording participant.
  std::string TwoBranches(const std::string& gid) {
    std::string p = participant_.base_url();
    auto branch = [&](const std::string& id) {
      return R"({"id":")" + id + R"(","prepare":")" + p + "/" + id + R"(/prepare","commit":")" + p +
             "/" + id + R"(/commit","abort":")" + p + "/" + id + R"(/abort"})";
    };
    return R"({"gid":")" + gid + R"(","mode":"2pc","wait":true,"branches":[)" + branch("a") + "," +
           branch("b") + "]}";
  }

  Poco::JSON::Object::Ptr Begin(const std::string& gid,
                                std::vector<std::pair<std::string, std::string>> headers) {
    auto r = HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions", TwoBranches(gid),
                      http::CallOptions{.headers = std::move(headers)});
    EXPECT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
    if (!r.ok()) return nullptr;
    Poco::JSON::Parser parser;
    return parser.parse(r->body).extract<Poco::JSON::Object::Ptr>();
  }

  // The calls the participant received for transaction `gid`.
  std::vector<RecordedRequest> CallsOf(const std::string& gid) {
    std::vector<RecordedRequest> out;
    for (const RecordedRequest& r : participant_.Requests()) {
      auto it = r.headers.find("treaty-gid");
      if (it != r.headers.end() && it->second == gid) out.push_back(r);
    }
    return out;
  }

  RecordingServer participant_;
  RecordingServer collector_;  // receives the spans (OTLP/HTTP JSON)
  std::unique_ptr<TreatyStack> stack_;
};

struct ExportedSpan {
  std::string trace_id, span_id, parent_span_id, name;
  int kind = 0;
  uint64_t start = 0, end = 0;
  std::map<std::string, std::string> attributes;
};

// Every span of trace `trace_id` in the collector's requests (each must be an OTLP/JSON export).
std::vector<ExportedSpan> SpansOf(const std::vector<RecordedRequest>& requests,
                                  const std::string& trace_id) {
  std::vector<ExportedSpan> out;
  for (const RecordedRequest& r : requests) {
    EXPECT_EQ(r.method, "POST");
    EXPECT_EQ(r.path, "/v1/traces");
    EXPECT_EQ(r.headers.count("content-type") ? r.headers.at("content-type") : "",
              "application/json");
    Poco::JSON::Parser parser;
    auto body = parser.parse(r.body).extract<Poco::JSON::Object::Ptr>();
    auto resources = body->getArray("resourceSpans");
    for (size_t i = 0; resources && i < resources->size(); ++i) {
      auto resource = resources->getObject(i);
      auto service = resource->getObject("resource")->getArray("attributes")->getObject(0);
      EXPECT_EQ(service->getValue<std::string>("key"), "service.name");
      auto scopes = resource->getArray("scopeSpans");
      for (size_t j = 0; j < scopes->size(); ++j) {
        auto spans = scopes->getObject(j)->getArray("spans");
        for (size_t k = 0; k < spans->size(); ++k) {
          auto s = spans->getObject(k);
          if (s->getValue<std::string>("traceId") != trace_id) continue;
          ExportedSpan e;
          e.trace_id = trace_id;
          e.span_id = s->getValue<std::string>("spanId");
          e.parent_span_id = s->optValue<std::string>("parentSpanId", "");
          e.name = s->getValue<std::string>("name");
          e.kind = s->getValue<int>("kind");
          e.start = std::stoull(s->getValue<std::string>("startTimeUnixNano"));
          e.end = std::stoull(s->getValue<std::string>("endTimeUnixNano"));
          auto attributes = s->getArray("attributes");
          for (size_t a = 0; a < attributes->size(); ++a) {
            auto attribute = attributes->getObject(a);
            e.attributes[attribute->getValue<std::string>("key")] =
                attribute->getObject("value")->getValue<std::string>("stringValue");
          }
          out.push_back(std::move(e));
        }
      }
    }
  }
  return out;
}

TEST_F(TraceTest, TraceContextAndPropagatedHeadersReachEveryBranchCall) {
  auto answer = Begin(
      "trace-1", {{"traceparent", std::string("00-") + kParentTrace + "-" + kParentSpan + "-01"},
                  {"tracestate", "vendor=abc"},
                  {"Authorization", "Bearer participant-token"},
                  {"x-tenant-id", "tenant-42"},
                  {"X-Api-Key", "key-secret-1"},
                  {"x-not-propagated", "no"}});
  ASSERT_NE(answer, nullptr);
  EXPECT_EQ(answer->optValue<std::string>("status", ""), "committed");
  EXPECT_EQ(answer->optValue<std::string>("trace_id", ""), kParentTrace)
      << "the answer names the caller's trace";

  // prepare and commit of both branches: each a child span of the same trace.
  std::vector<RecordedRequest> calls = CallsOf("trace-1");
  ASSERT_EQ(calls.size(), 4u);
  std::set<std::string> spans;
  for (const RecordedRequest& c : calls) {
    SCOPED_TRACE(c.path);
    TraceParent tp = Split(At(c.headers, "traceparent"));
    EXPECT_EQ(tp.trace_id, kParentTrace) << At(c.headers, "traceparent");
    EXPECT_TRUE(LowerHex(tp.span_id, 16)) << At(c.headers, "traceparent");
    EXPECT_NE(tp.span_id, kParentSpan) << "a call is a new span, not the caller's";
    EXPECT_EQ(tp.flags, "01");
    spans.insert(tp.span_id);
    EXPECT_EQ(At(c.headers, "tracestate"), "vendor=abc");
    EXPECT_EQ(At(c.headers, "authorization"), "Bearer participant-token");
    EXPECT_EQ(At(c.headers, "x-tenant-id"), "tenant-42");
    EXPECT_EQ(At(c.headers, "x-api-key"), "key-secret-1") << "secret ones are sent all the same";
    EXPECT_EQ(c.headers.count("x-not-propagated"), 0u) << "only the configured headers go on";
  }
  EXPECT_EQ(spans.size(), 4u) << "each call has its own span id";

  // Kept with the transaction: its own span's parent is the caller's span; secrets masked.
  auto got = HttpCall("GET", stack_->treatyd().base_url() + "/v1/transactions/trace-1");
  ASSERT_TRUE(got.ok() && got->status == 200);
  Poco::JSON::Parser parser;
  auto tx = parser.parse(got->body).extract<Poco::JSON::Object::Ptr>();
  TraceParent own = Split(tx->optValue<std::string>("traceparent", ""));
  EXPECT_EQ(own.trace_id, kParentTrace) << got->body;
  EXPECT_TRUE(LowerHex(own.span_id, 16)) << got->body;
  EXPECT_EQ(spans.count(own.span_id), 0u) << "the transaction's span is none of its calls'";
  EXPECT_EQ(tx->optValue<std::string>("parent_span_id", ""), kParentSpan);
  EXPECT_EQ(tx->optValue<std::string>("tracestate", ""), "vendor=abc");
  auto shown = tx->getObject("propagated_headers");
  ASSERT_NE(shown, nullptr) << got->body;
  EXPECT_EQ(shown->optValue<std::string>("authorization", ""), "****");
  EXPECT_EQ(shown->optValue<std::string>("x-api-key", ""), "****");
  EXPECT_EQ(shown->optValue<std::string>("x-tenant-id", ""), "tenant-42");
  EXPECT_EQ(got->body.find("participant-token"), std::string::npos) << got->body;
  EXPECT_EQ(got->body.find("key-secret-1"), std::string::npos) << got->body;

  // The log names the trace, and no secret.
  std::string log = ReadAll(stack_->treatyd().process().log_path());
  EXPECT_NE(log.find(kParentTrace), std::string::npos);
  EXPECT_EQ(log.find("participant-token"), std::string::npos);
  EXPECT_EQ(log.find("key-secret-1"), std::string::npos);
}

TEST_F(TraceTest, ATransactionWithoutAValidTraceparentStartsItsOwnTrace) {
  std::set<std::string> traces;
  for (const auto& [gid, traceparent] : std::vector<std::pair<std::string, std::string>>{
           {"fresh-1", ""},
           // Invalid per the spec (upper-case hex, all-zero trace id): ignored, with tracestate.
           {"fresh-2", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"},
           {"fresh-3", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}}) {
    SCOPED_TRACE(gid);
    std::vector<std::pair<std::string, std::string>> headers = {{"tracestate", "vendor=abc"}};
    if (!traceparent.empty()) headers.emplace_back("traceparent", traceparent);
    auto answer = Begin(gid, headers);
    ASSERT_NE(answer, nullptr);
    const std::string trace = answer->optValue<std::string>("trace_id", "");
    EXPECT_TRUE(LowerHex(trace, 32)) << trace;
    traces.insert(trace);
    std::vector<RecordedRequest> calls = CallsOf(gid);
    ASSERT_EQ(calls.size(), 4u);
    for (RecordedRequest& c : calls) {
      EXPECT_EQ(Split(At(c.headers, "traceparent")).trace_id, trace)
          << At(c.headers, "traceparent");
      EXPECT_EQ(c.headers.count("tracestate"), 0u) << "a tracestate without its traceparent";
    }
  }
  EXPECT_EQ(traces.size(), 3u) << "each its own trace";
}

TEST_F(TraceTest, SpansOfATransactionReachTheCollectorLinkedAndInOrder) {
  const std::string traceparent = std::string("00-") + kParentTrace + "-" + kParentSpan + "-01";
  auto answer = Begin("spans-1", {{"traceparent", traceparent}});
  ASSERT_NE(answer, nullptr);
  ASSERT_EQ(answer->optValue<std::string>("status", ""), "committed");
  // The transaction's own span is sent when it ends: wait for it.
  ASSERT_TRUE(collector_.WaitFor([](const std::vector<RecordedRequest>& requests) {
    for (const RecordedRequest& r : requests) {
      if (r.body.find("\"treaty.transaction\"") != std::string::npos) return true;
    }
    return false;
  })) << "no transaction span came";
  std::vector<ExportedSpan> spans = SpansOf(collector_.Requests(), kParentTrace);

  const ExportedSpan* whole = nullptr;
  std::vector<const ExportedSpan*> calls, decisions, begins;
  for (const ExportedSpan& s : spans) {
    if (s.name == "treaty.transaction") whole = &s;
    if (s.name == "treaty.prepare" || s.name == "treaty.commit") calls.push_back(&s);
    if (s.name == "treaty.decision") decisions.push_back(&s);
    if (s.name == "treaty.begin") begins.push_back(&s);
  }
  ASSERT_NE(whole, nullptr);
  EXPECT_EQ(whole->parent_span_id, kParentSpan) << "a child of the caller's span";
  EXPECT_EQ(At(whole->attributes, "treaty.gid"), "spans-1");
  EXPECT_EQ(At(whole->attributes, "treaty.status"), "committed");
  EXPECT_LE(whole->start, whole->end);
  ASSERT_EQ(begins.size(), 1u);
  EXPECT_EQ(begins[0]->parent_span_id, whole->span_id);

  // Each call's span is the span the participant received in its traceparent.
  std::set<std::string> received;
  for (const RecordedRequest& c : CallsOf("spans-1")) {
    received.insert(Split(c.headers.at("traceparent")).span_id);
  }
  ASSERT_EQ(calls.size(), 4u);
  ASSERT_EQ(received.size(), 4u);
  for (const ExportedSpan* c : calls) {
    SCOPED_TRACE(c->name + " " + At(c->attributes, "treaty.branch_id"));
    EXPECT_EQ(c->parent_span_id, whole->span_id);
    EXPECT_EQ(received.count(c->span_id), 1u) << c->span_id;
    EXPECT_EQ(c->kind, 3) << "client";
    EXPECT_EQ(At(c->attributes, "treaty.op"), c->name.substr(7));
    EXPECT_EQ(At(c->attributes, "treaty.outcome"), "done");
    EXPECT_EQ(At(c->attributes, "http.status_code"), "200");
    EXPECT_LE(whole->start, c->start);
    EXPECT_LE(c->start, c->end);
    EXPECT_LE(c->end, whole->end);
  }
  // The decision (committing) came after both prepares started and before either commit.
  ASSERT_EQ(decisions.size(), 1u);
  EXPECT_EQ(decisions[0]->parent_span_id, whole->span_id);
  EXPECT_EQ(At(decisions[0]->attributes, "treaty.to"), "committing");
  for (const ExportedSpan* c : calls) {
    if (c->name == "treaty.prepare") {
      EXPECT_LE(c->start, decisions[0]->start);
    } else {
      EXPECT_LE(decisions[0]->start, c->start);
    }
  }
  // Every span id in the trace is unique.
  std::set<std::string> ids;
  for (const ExportedSpan& s : spans) EXPECT_TRUE(ids.insert(s.span_id).second) << s.name;
}

TEST_F(TraceTest, ADeadCollectorDropsSpansAndCountsThem) {
  // The collector refuses everything: transactions go on, and the lost spans are counted.
  collector_.AnswerWith(503, "{}");
  for (int i = 0; i < 3; ++i) {
    auto answer = Begin("dead-" + std::to_string(i), {});
    ASSERT_NE(answer, nullptr);
    EXPECT_EQ(answer->optValue<std::string>("status", ""), "committed");
  }
  auto failed = [&]() -> int64_t {
    auto m = HttpCall("GET", stack_->treatyd().base_url() + "/metrics");
    if (!m.ok()) return -1;
    const std::string key = "\ntreaty_spans_failed_total ";
    size_t at = m->body.find(key);
    return at == std::string::npos ? -1 : std::stoll(m->body.substr(at + key.size()));
  };
  // Each transaction makes 5 spans at least (begin, 2 prepares, decision, ...).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (failed() < 15 && std::chrono::steady_clock::now() < until) {
    collector_.WaitFor([n = collector_.Requests().size()](
                           const std::vector<RecordedRequest>& r) { return r.size() > n; },
                       std::chrono::seconds(5));
  }
  EXPECT_GE(failed(), 15);
}

TEST(TraceMessageTest, MessagesCarryTheTransactionsTraceAsKafkaHeaders) {
  auto started = TreatyStack::Start(StackOptions{.with_broker = true});
  ASSERT_TRUE(started.ok()) << started.status().message();
  std::unique_ptr<TreatyStack> stack = std::move(*started);
  RecordingServer service;  // the check-back URL (not called: the client submits)
  std::string base = stack->treatyd().base_url();
  const std::string traceparent = std::string("00-") + kParentTrace + "-" + kParentSpan + "-01";
  auto prepared = HttpCall(
      "POST", base + "/v1/transactions",
      R"({"gid":"traced-msg","mode":"msg","query":")" + service.base_url() +
          R"(/query","messages":[{"topic":"t.traced","key":"k1","payload":{"n":1}},)"
          R"({"topic":"t.traced","key":"k1","payload":{"n":2},)"
          R"("headers":{"traceparent":"00-11111111111111111111111111111111-2222222222222222-01"}}]})",
      http::CallOptions{.headers = {{"traceparent", traceparent}, {"tracestate", "vendor=m"}}});
  ASSERT_TRUE(prepared.ok() && prepared->status == 201) << (prepared.ok() ? prepared->body : "");
  auto submitted =
      HttpCall("POST", base + "/v1/transactions/traced-msg/submit", R"({"wait":true})");
  ASSERT_TRUE(submitted.ok() && submitted->status == 200);
  auto lines = stack->broker()->Consume("t.traced", 2, /*allow_extra=*/false, /*headers=*/true);
  ASSERT_TRUE(lines.ok()) << lines.status().message();
  ASSERT_EQ(lines->size(), 2u);
  const std::string& first = (*lines)[0];
  const std::string key = "traceparent=";
  size_t at = first.find(key);
  ASSERT_NE(at, std::string::npos) << first;
  TraceParent tp = Split(first.substr(at + key.size(), 55));
  EXPECT_EQ(tp.trace_id, kParentTrace) << first;
  EXPECT_TRUE(LowerHex(tp.span_id, 16)) << first;
  EXPECT_NE(tp.span_id, kParentSpan) << "the message is its own span";
  EXPECT_NE(first.find("tracestate=vendor=m;"), std::string::npos) << first;
  EXPECT_NE(
      (*lines)[1].find("traceparent=00-11111111111111111111111111111111-2222222222222222-01;"),
      std::string::npos)
      << "a message's own traceparent wins: " << (*lines)[1];
}

}  // namespace
}  // namespace treaty::harness
