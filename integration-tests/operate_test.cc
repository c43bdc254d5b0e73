// Operating Treaty: the console in a real browser, the API description against the real server,
// metrics after every mode, and sidecars sharing one store.

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/browser.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

HttpReply Call(Service& s, const std::string& method, const std::string& path,
               const std::string& body = "") {
  auto r = HttpCall(method, s.base_url() + path, body, std::chrono::seconds(60));
  EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.status().message();
  return r.ok() ? *r : HttpReply{};
}

std::string TwoPc(const std::string& gid, const std::string& branch, bool wait,
                  const std::string& timeout = "10s") {
  return R"({"gid":")" + gid + R"(","mode":"2pc","timeout":")" + timeout + R"(","wait":)" +
         (wait ? "true" : "false") + R"(,"branches":[)" + branch + "]}";
}

// ---------------------------------------------------------------------------------------------
// The console, in headless Chromium.

class ConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = TreatyStack::Start(StackOptions{.retry = "{ initial: 200ms, max: 1s }"});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
    ASSERT_OK(stack_->SetStock("A1", 100));
  }

  // A script's JSON answer, failing the test on error.
  std::string Run(Browser& b, const std::string& script) {
    auto r = b.Run(script);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : "";
  }

  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(ConsoleTest, ShowsTransactionsAndTheirTimelineAndItsActionsChangeState) {
  Service& t = stack_->treatyd();
  // One committed, one aborted, one undecided (begun, no branches yet), and one stuck: decided to
  // commit, but its commit URL leads nowhere, so it retries past its deadline.
  ASSERT_EQ(Call(t, "POST", "/v1/transactions",
                 TwoPc("console-ok", stack_->InventoryBranch("stock", "A1", 1), true))
                .status,
            200);
  ASSERT_EQ(Call(t, "POST", "/v1/transactions",
                 TwoPc("console-no", stack_->InventoryBranch("stock", "A1", 5000), true))
                .status,
            200);
  ASSERT_EQ(Call(t, "POST", "/v1/transactions",
                 R"({"gid":"console-undecided","mode":"2pc","timeout":"5m"})")
                .status,
            201);
  auto dead_port = FreePort();
  ASSERT_OK(dead_port);
  std::string stuck_branch = stack_->InventoryBranch("stock", "A1", 1);
  std::string commit_url = TreatyStack::Url(stack_->inventory(), "/2pc/commit");
  stuck_branch.replace(stuck_branch.find(commit_url), commit_url.size(),
                       "http://127.0.0.1:" + std::to_string(*dead_port) + "/2pc/commit");
  ASSERT_EQ(
      Call(t, "POST", "/v1/transactions", TwoPc("console-stuck", stuck_branch, false, "1s")).status,
      201);
  ASSERT_TRUE(WaitUntil(
      [&] {
        HttpReply r = Call(t, "GET", "/v1/transactions?stuck=true");
        return r.body.find("console-stuck") != std::string::npos;
      },
      std::chrono::seconds(30)))
      << "console-stuck never became stuck: " << stack_->StatusOf("console-stuck");

  auto started = Browser::Start();
  ASSERT_TRUE(started.ok()) << started.status().message();
  Browser& b = **started;
  ASSERT_OK(b.Navigate(t.base_url() + "/"));

  // Every transaction is listed, the stuck one first and marked.
  ASSERT_OK(b.WaitFor(R"(return ["console-ok", "console-no", "console-undecided", "console-stuck"]
      .every(g => document.querySelector('#transactions tr[data-gid="' + g + '"]'));)"));
  EXPECT_EQ(Run(b, R"(const r = document.querySelector("#transactions tbody tr");
      return r.dataset.gid + " " + r.classList.contains("stuck");)"),
            "\"console-stuck true\"");
  EXPECT_EQ(
      Run(b,
          R"(return document.querySelector('tr[data-gid="console-no"] td:nth-child(3)').textContent)"),
      "\"aborted\"");
  // Counts by status.
  ASSERT_OK(b.WaitFor(R"(const c = document.querySelector('#counts [data-status="committed"]');
      return c !== null && c.textContent === "committed 1";)"));
  EXPECT_EQ(
      Run(b, R"(return document.querySelector('#counts [data-status="active"]').textContent)"),
      "\"active 1\"");

  // The status filter, chosen as a person would.
  ASSERT_OK(b.Click("#f-status option:nth-child(6)"));  // committed
  ASSERT_OK(b.WaitFor(R"(const rows = [...document.querySelectorAll("#transactions tbody tr")];
      return rows.length === 1 && rows[0].dataset.gid === "console-ok";)"));
  ASSERT_OK(b.Click("#f-status option:nth-child(1)"));  // any
  ASSERT_OK(
      b.WaitFor(R"(return document.querySelectorAll("#transactions tbody tr").length === 4;)"));

  // One transaction's branches and decision log, as a timeline.
  ASSERT_OK(b.Click(R"(tr[data-gid="console-ok"])"));
  ASSERT_OK(b.WaitFor(R"(return document.getElementById("detail-gid").textContent === "console-ok"
      && document.querySelectorAll("#timeline li").length >= 3;)"));
  std::string timeline = Run(b, R"(return [...document.querySelectorAll("#timeline li strong")]
      .map(e => e.textContent).join(" | "))");
  EXPECT_NE(timeline.find("active"), std::string::npos) << timeline;
  EXPECT_NE(timeline.find("committing \u2192 committed"), std::string::npos) << timeline;
  EXPECT_EQ(Run(b, R"(return [...document.querySelectorAll('#branches tr[data-branch="stock"]')]
      .map(r => r.cells[1].textContent + ":" + r.cells[2].textContent).join(" "))"),
            "\"prepare:succeeded commit:succeeded abort:pending\"");
  EXPECT_EQ(Run(b, "return document.getElementById('abort').disabled"), "true")
      << "a committed transaction offers no abort";

  // Force abort of the undecided transaction, confirmed on the page.
  ASSERT_OK(b.Click(R"(tr[data-gid="console-undecided"])"));
  ASSERT_OK(
      b.WaitFor(R"(return document.getElementById("detail-gid").textContent === "console-undecided"
      && !document.getElementById("abort").disabled;)"));
  ASSERT_OK(b.Click("#abort"));
  ASSERT_OK(b.Click("#abort-confirm"));
  ASSERT_OK(
      b.WaitFor(R"(return document.getElementById("detail-status").textContent === "aborted";)"));
  EXPECT_EQ(stack_->StatusOf("console-undecided"), "aborted");

  // Retry now on the stuck one: its commit is attempted again at once.
  ASSERT_OK(b.Click(R"(tr[data-gid="console-stuck"])"));
  ASSERT_OK(b.WaitFor(
      R"(return document.getElementById("detail-gid").textContent === "console-stuck";)"));
  ASSERT_OK(b.Click("#retry"));
  ASSERT_OK(b.WaitFor(
      R"(return document.getElementById("action-result").textContent.startsWith("Retry: committing");)"));

  // Nothing was fetched from anywhere but treatyd.
  EXPECT_EQ(Run(b, R"(return performance.getEntriesByType("resource")
      .every(e => e.name.startsWith(location.origin));)"),
            "true");
  EXPECT_EQ(Run(b, R"(return document.getElementById("list-note").classList.contains("error"))"),
            "false");

  std::filesystem::create_directories(kArtifactsDir);
  std::string shot = std::string(kArtifactsDir) + "/console.png";
  ASSERT_OK(b.Screenshot(shot));
  std::ifstream png(shot, std::ios::binary);
  char magic[4] = {};
  png.read(magic, 4);
  EXPECT_EQ(std::string(magic + 1, 3), "PNG") << shot;
}

// ---------------------------------------------------------------------------------------------
// docs/openapi.yaml, as treatyd serves it, against treatyd's answers.

TEST(OpenApiTest, EveryDocumentedOperationAnswersAsDocumented) {
  auto s = TreatyStack::Start();
  ASSERT_TRUE(s.ok()) << s.status().message();
  Service& t = (*s)->treatyd();
  HttpReply doc = Call(t, "GET", "/openapi.yaml");
  ASSERT_EQ(doc.status, 200);
  std::ifstream source(std::string(kSourceDir) + "/docs/openapi.yaml");
  std::string text((std::istreambuf_iterator<char>(source)), std::istreambuf_iterator<char>());
  EXPECT_EQ(doc.body, text) << "treatyd serves another description than docs/openapi.yaml";

  YAML::Node spec = YAML::Load(doc.body);
  int probed = 0;
  for (const auto& path : spec["paths"]) {
    std::string concrete = path.first.as<std::string>();
    for (const auto& [param, value] : std::vector<std::pair<std::string, std::string>>{
             {"{gid}", "no-such-gid"}, {"{name}", "no-such-saga"}, {"{file}", "console.js"}}) {
      if (size_t at = concrete.find(param); at != std::string::npos) {
        concrete.replace(at, param.size(), value);
      }
    }
    for (const auto& op : path.second) {
      std::string verb = op.first.as<std::string>();
      if (verb == "parameters") continue;
      std::string method = verb == "get" ? "GET" : verb == "post" ? "POST" : verb;
      HttpReply r = Call(t, method, concrete, method == "POST" ? "{}" : "");
      ++probed;
      std::string what = method + " " + concrete + " -> " + std::to_string(r.status) + " " + r.body;
      EXPECT_NE(r.status, 405) << what;
      EXPECT_EQ(r.body.find("no such endpoint"), std::string::npos) << what;
      EXPECT_TRUE(op.second["responses"][std::to_string(r.status)].IsDefined())
          << what << ": status not documented";
      if (r.status >= 400) {
        EXPECT_EQ(r.content_type, "application/json") << what;
        EXPECT_NE(r.body.find("\"error\":{\"code\":"), std::string::npos) << what;
      }
    }
  }
  EXPECT_GE(probed, 17);
}

// ---------------------------------------------------------------------------------------------
// Metrics after one transaction of every mode.

TEST(MetricsTest, EveryModeShowsInTheMetrics) {
  auto s =
      TreatyStack::Start(StackOptions{.with_broker = true,
                                      .treatyd_env = {{"TREATY_TIMEOUTS_MSG_CHECK_BACK", "1s"}},
                                      .saga_files = {PlaceOrderSagaFile()}});
  ASSERT_TRUE(s.ok()) << s.status().message();
  TreatyStack& stack = **s;
  Service& t = stack.treatyd();
  ASSERT_OK(stack.SetStock("A1", 100));
  ASSERT_EQ(Call(t, "POST", "/v1/transactions",
                 TwoPc("m-2pc", stack.InventoryBranch("stock", "A1", 1), true))
                .status,
            200);
  ASSERT_EQ(Call(t, "POST", "/v1/transactions",
                 R"({"gid":"m-tcc","mode":"tcc","wait":true,"branches":[)" +
                     stack.InventoryTccBranch("stock", "A1", 1) + "]}")
                .status,
            200);
  ASSERT_EQ(Call(t, "POST", "/v1/sagas/place-order",
                 R"({"gid":"m-saga","wait":true,"input":{"sku":"A1","qty":1,"card":"4242"}})")
                .status,
            200);
  HttpReply msg =
      Call(stack.orders(), "POST", "/msg/orders", R"({"gid":"m-msg","sku":"A1","qty":1})");
  ASSERT_LT(msg.status, 300) << msg.body;
  for (const char* gid : {"m-2pc", "m-tcc", "m-saga", "m-msg"}) {
    ASSERT_EQ(stack.WaitFinal(gid), "committed") << gid;
  }
  HttpReply m = Call(t, "GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  for (const char* mode : {"2pc", "tcc", "saga", "msg"}) {
    std::string m_mode = std::string("mode=\"") + mode + "\"";
    EXPECT_NE(m.body.find("treaty_transactions_started_total{" + m_mode + "} 1\n"),
              std::string::npos)
        << mode << "\n"
        << m.body;
    EXPECT_NE(
        m.body.find("treaty_transactions_finished_total{" + m_mode + ",outcome=\"committed\"} 1\n"),
        std::string::npos)
        << mode << "\n"
        << m.body;
  }
  for (const char* call : {"{mode=\"2pc\",op=\"commit\"}", "{mode=\"tcc\",op=\"confirm\"}",
                           "{mode=\"saga\",op=\"action\"}", "{mode=\"msg\",op=\"publish\"}"}) {
    EXPECT_NE(m.body.find(std::string("treaty_branch_call_seconds_count") + call),
              std::string::npos)
        << call;
  }
  EXPECT_NE(
      m.body.find("treaty_branch_calls_total{mode=\"msg\",op=\"publish\",outcome=\"done\"} 1\n"),
      std::string::npos)
      << "the message's delivery";
  EXPECT_NE(m.body.find("treaty_recovery_lag_seconds "), std::string::npos);
  for (const char* op : {"create", "transition", "load"}) {
    EXPECT_NE(m.body.find(std::string("treaty_store_call_seconds_count{op=\"") + op + "\"}"),
              std::string::npos)
        << "store latency of " << op;
  }
}

// ---------------------------------------------------------------------------------------------
// Sidecars: one treatyd beside each service, on loopback, all on one store.

TEST(SidecarTest, ASidecarKilledMidTransactionIsFinishedByAnotherOnTheSameStore) {
  // Sidecar A (the stack's treatyd) serves order-svc, which calls it at 127.0.0.1; it dies right
  // after deciding to commit a transactional message, before delivering it.
  auto s =
      TreatyStack::Start(StackOptions{.with_broker = true,
                                      .treatyd_env = {{"TREATY_CRASH_POINT", "after_decision"},
                                                      {"TREATY_TIMEOUTS_MSG_CHECK_BACK", "1s"},
                                                      {"TREATY_KAFKA_DELIVERY_TIMEOUT", "2s"}}});
  ASSERT_TRUE(s.ok()) << s.status().message();
  TreatyStack& stack = **s;
  ASSERT_OK(stack.SetStock("A1", 100));
  EXPECT_EQ(stack.treatyd().base_url().rfind("http://127.0.0.1:", 0), 0u)
      << "a sidecar listens on loopback";
  // Sidecar B: the same config file (as every sidecar of a fleet has), another node id.
  std::ifstream config_file(stack.treatyd().config_path());
  std::string config((std::istreambuf_iterator<char>(config_file)),
                     std::istreambuf_iterator<char>());
  auto b = Service::Start(ServiceSpec{
      .name = "treatyd-b",
      .binary = kTreatydPath,
      .config_yaml = config,
      .env = {{"TREATY_NODE_ID", "sidecar-b"}, {"TREATY_TIMEOUTS_MSG_CHECK_BACK", "1s"}}});
  ASSERT_TRUE(b.ok()) << b.status().message();
  ASSERT_TRUE(WaitUntil([&] { return Call(**b, "GET", "/readyz").status == 200; },
                        std::chrono::seconds(30)));

  (void)HttpCall("POST", TreatyStack::Url(stack.orders(), "/msg/orders"),
                 R"({"gid":"sidecar-1","sku":"A1","qty":2})", std::chrono::seconds(30));
  ASSERT_TRUE(stack.treatyd().process().Wait(std::chrono::seconds(30)).ok())
      << "sidecar A did not reach its crash point";
  EXPECT_EQ(stack.OrderCount("sidecar-1").value(), 1) << "the order committed locally";

  std::string status;
  ASSERT_TRUE(WaitUntil(
      [&] {
        HttpReply r = Call(**b, "GET", "/v1/transactions/sidecar-1");
        status = r.status == 200 ? ParseObject(r.body)->getValue<std::string>("status") : "";
        return status == "committed";
      },
      std::chrono::seconds(60)))
      << "sidecar B did not finish sidecar A's transaction; status " << status;
  auto events = stack.broker()->Consume("orders.events", 1, /*allow_extra=*/true, /*headers=*/true);
  ASSERT_OK(events);
  int delivered = 0;
  for (const std::string& e : *events)
    delivered += e.find("treaty-gid=sidecar-1;") != std::string::npos;
  EXPECT_GE(delivered, 1) << "the message never reached the topic";
}

}  // namespace
}  // namespace treaty::harness
