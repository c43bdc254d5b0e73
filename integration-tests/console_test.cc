// The console's pictures, in headless Chromium: a saga's graph (of a run and of its definition),
// a transaction's calls on a time axis, and the traffic strip. Each picture is checked by what
// it shows (its nodes, edges, bars and their states, read from the SVG's data-* attributes),
// against what the API says. Each test leaves a screenshot in build/test-artifacts/, which
// scripts/console-screenshots copies into docs/.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

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

class ConsolePicturesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = TreatyStack::Start(StackOptions{.retry = "{ initial: 100ms, max: 300ms }",
                                             .saga_files = {PlaceOrderSagaFile()}});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
    ASSERT_OK(stack_->SetStock("A1", 1000));
    auto b = Browser::Start();
    ASSERT_TRUE(b.ok()) << b.status().message();
    browser_ = std::move(*b);
  }

  // A script's JSON answer, failing the test on error.
  std::string Run(const std::string& script) {
    auto r = browser_->Run(script);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : "";
  }

  // Saves the element matching `selector` (or the window) as build/test-artifacts/<name>.png.
  void Shoot(const std::string& name, const std::string& selector = "") {
    std::filesystem::create_directories(kArtifactsDir);
    const std::string path = std::string(kArtifactsDir) + "/" + name + ".png";
    ASSERT_OK(selector.empty() ? browser_->Screenshot(path)
                               : browser_->ScreenshotElement(selector, path));
  }

  Service& treatyd() { return stack_->treatyd(); }

  std::unique_ptr<TreatyStack> stack_;
  std::unique_ptr<Browser> browser_;
};

// ---------------------------------------------------------------------------------------------
// The saga graph.

TEST_F(ConsolePicturesTest, ASagaIsDrawnAsItsStepsWithTheRefusedOneAndItsCompensatedAncestors) {
  // The card is declined: charge-payment (after reserve-stock and create-order) is refused, and
  // both steps it depends on are compensated.
  HttpReply r = Call(treatyd(), "POST", "/v1/sagas/place-order",
                     R"({"gid":"saga-declined","wait":true,)"
                     R"("input":{"sku":"A1","qty":1,"card":"declined"}})");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(stack_->WaitFinal("saga-declined"), "aborted");

  ASSERT_OK(browser_->Navigate(treatyd().base_url() + "/?gid=saga-declined"));
  ASSERT_OK(
      browser_->WaitFor(R"(return document.querySelectorAll("#saga-graph .node").length > 0;)"));
  // As many nodes as the saga has steps, as many edges as it has dependencies: read from the
  // same transaction through the API, not written down here.
  EXPECT_EQ(Run(R"(return (async () => {
      const tx = await (await fetch("/v1/transactions/saga-declined")).json();
      const steps = new Set(tx.branches.map(b => b.id));
      const deps = new Set();
      for (const b of tx.branches) for (const a of (b.after || [])) deps.add(a + ">" + b.id);
      const nodes = [...document.querySelectorAll("#saga-graph .node")].map(n => n.dataset.step);
      const edges = [...document.querySelectorAll("#saga-graph .edge")]
          .map(e => e.dataset.from + ">" + e.dataset.to);
      return JSON.stringify({nodes: nodes.length === steps.size && nodes.every(n => steps.has(n)),
                             edges: edges.length === deps.size && edges.every(e => deps.has(e)),
                             n: nodes.length, e: edges.length});
      })();)"),
            R"("{\"nodes\":true,\"edges\":true,\"n\":3,\"e\":2}")");
  EXPECT_EQ(Run(R"(return [...document.querySelectorAll("#saga-graph .node")]
      .map(n => n.dataset.step + "=" + n.dataset.state).sort().join(" "))"),
            "\"charge-payment=refused create-order=compensated reserve-stock=compensated\"");
  // Laid out in levels: the refused step is to the right of both it runs after.
  EXPECT_EQ(Run(R"(const x = s => document.querySelector('#saga-graph .node[data-step="' + s + '"]')
      .getBoundingClientRect().left;
      return x("charge-payment") > x("reserve-stock") && x("charge-payment") > x("create-order")
          && x("reserve-stock") === x("create-order");)"),
            "true");
  // A click says the step's attempts and its last error.
  ASSERT_OK(browser_->Click(R"(#saga-graph .node[data-step="charge-payment"])"));
  std::string info = Run(R"(return document.getElementById("saga-graph-info").textContent)");
  EXPECT_NE(info.find("action refused \u00b7 1 attempt"), std::string::npos) << info;
  EXPECT_NE(info.find("card declined"), std::string::npos) << info;
  Shoot("console-saga", "#saga-graph-box");

  // The Sagas tab draws the definition the same way: name, version, its steps and their order.
  ASSERT_OK(browser_->Click("#tab-sagas"));
  ASSERT_OK(browser_->WaitFor(
      R"(return document.querySelectorAll("#saga-def-graph .node").length > 0;)"));
  EXPECT_EQ(Run(R"(return document.getElementById("saga-def-name").textContent + " " +
      document.querySelectorAll("#saga-def-graph .node").length + " " +
      document.querySelectorAll("#saga-def-graph .edge").length + " " +
      [...document.querySelectorAll("#saga-def-graph .edge")]
          .map(e => e.dataset.from + ">" + e.dataset.to).sort().join(","))"),
            "\"place-order 3 2 create-order>charge-payment,reserve-stock>charge-payment\"");
  EXPECT_EQ(Run(R"(return (async () => {
      const def = await (await fetch("/v1/sagas/place-order")).json();
      return document.getElementById("saga-def-version").textContent.includes(def.version);
      })();)"),
            "true");
  Shoot("console-saga-definition", "#sagas-section");
}

// ---------------------------------------------------------------------------------------------
// The timeline.

TEST_F(ConsolePicturesTest, ATransactionsCallsAreDrawnOnATimeAxisOneBarPerAttempt) {
  // inventory-svc answers its commits with 503 until three have failed; then it behaves again.
  auto fault = [&](const std::string& action) {
    return Call(stack_->inventory(), "POST", "/admin/faults",
                R"({"op":"commit","action":")" + action + R"(","status":503})")
        .status;
  };
  ASSERT_EQ(fault("fail"), 200);
  ASSERT_EQ(Call(treatyd(), "POST", "/v1/transactions",
                 R"({"gid":"retried","mode":"2pc","timeout":"30s","branches":[)" +
                     stack_->InventoryBranch("stock", "A1", 1) + "," +
                     stack_->OrderBranch("order", "A1", 1) + "]}")
                .status,
            201);
  ASSERT_TRUE(WaitUntil(
      [&] {
        HttpReply r = Call(treatyd(), "GET", "/v1/transactions/retried");
        return r.body.find(R"("id":"stock","op":"commit")") != std::string::npos &&
               r.body.find(R"("attempts":3)") != std::string::npos;
      },
      std::chrono::seconds(30)))
      << Call(treatyd(), "GET", "/v1/transactions/retried").body;
  ASSERT_EQ(fault("off"), 200);
  ASSERT_EQ(stack_->WaitFinal("retried"), "committed");

  ASSERT_OK(browser_->Navigate(treatyd().base_url() + "/?gid=retried"));
  ASSERT_OK(
      browser_->WaitFor(R"(return document.querySelectorAll("#tx-timeline .call").length > 0;)"));
  // One row per branch, one bar per attempt of each op, as many as the API counts.
  EXPECT_EQ(Run(R"(return (async () => {
      const tx = await (await fetch("/v1/transactions/retried")).json();
      const bad = [];
      for (const b of tx.branches) {
        const bars = document.querySelectorAll(
            `#tx-timeline .call[data-branch="${b.id}"][data-op="${b.op}"]`).length;
        if (bars !== b.attempts) bad.push(b.id + "/" + b.op + ": " + bars + " bars, " + b.attempts + " attempts");
      }
      const rows = [...document.querySelectorAll("#tx-timeline .lane-label")].map(l => l.dataset.branch);
      return bad.join("; ") + "|" + rows.sort().join(",");
      })();)"),
            "\"|order,stock\"");
  // The retried commit: a bar for each that got no answer (three or more), then the one that
  // succeeded, in order.
  EXPECT_EQ(Run(R"(const bars = [...document.querySelectorAll(
          '#tx-timeline .call[data-branch="stock"][data-op="commit"]')];
      bars.sort((a, b) => a.querySelector("rect").x.baseVal.value - b.querySelector("rect").x.baseVal.value);
      const seen = bars.map(b => b.dataset.attempt + ":" + b.dataset.outcome);
      const want = bars.map((b, i) => (i + 1) + ":" + (i + 1 < bars.length ? "unknown" : "succeeded"));
      return bars.length >= 4 && seen.join(" ") === want.join(" ") ? "ok" : seen.join(" ");)"),
            "\"ok\"");
  // The decision is a vertical line after the prepares and before the last commit.
  EXPECT_EQ(Run(R"(const d = document.querySelector('#tx-timeline .log-mark[data-decision="true"]');
      const xOf = s => [...document.querySelectorAll(s + " rect")].map(r => r.x.baseVal.value);
      const dx = d.querySelector("line").x1.baseVal.value;
      return d.dataset.to + " " + (dx < Math.max(...xOf('#tx-timeline .call[data-op="commit"]')))
          + " " + (dx >= Math.min(...xOf('#tx-timeline .call[data-op="prepare"]')));)"),
            "\"committing true true\"");
  Shoot("console-timeline", "#timeline-box");
}

// ---------------------------------------------------------------------------------------------
// The traffic strip.

TEST_F(ConsolePicturesTest, TheTrafficStripMovesAfterABurstOfTransactions) {
  ASSERT_OK(browser_->Navigate(treatyd().base_url() + "/"));
  ASSERT_OK(browser_->WaitFor(R"(return document.querySelector("#traffic svg") !== null;)"));
  const std::string before = Run(R"(const s = document.querySelector("#traffic svg");
      return [s.dataset.committed, s.dataset.aborted, s.dataset.calls,
              document.querySelectorAll("#traffic .tps").length].join(" ");)");
  EXPECT_EQ(before, "\"0 0 0 0\"") << "nothing ran yet";

  // A burst: 20 committed (two branches each: four calls), 5 aborted (out of stock: refused).
  for (int i = 0; i < 25; ++i) {
    const int qty = i < 20 ? 1 : 100000;
    HttpReply r = Call(treatyd(), "POST", "/v1/transactions",
                       R"({"gid":"burst-)" + std::to_string(i) +
                           R"(","mode":"2pc","wait":true,"branches":[)" +
                           stack_->InventoryBranch("stock", "A1", qty) + "," +
                           stack_->OrderBranch("order", "A1", qty) + "]}");
    ASSERT_EQ(r.status, 200) << r.body;
  }
  // The strip refreshes by itself: its bars add up to the burst, and the p99 line is drawn.
  ASSERT_OK(browser_->WaitFor(R"(const s = document.querySelector("#traffic svg");
      return s.dataset.committed === "20" && s.dataset.aborted === "5";)"));
  EXPECT_EQ(Run(R"(const sum = c => [...document.querySelectorAll("#traffic .tps." + c)]
          .reduce((n, r) => n + Number(r.dataset.count), 0);
      const s = document.querySelector("#traffic svg");
      return [sum("committed"), sum("aborted"), Number(s.dataset.calls) >= 20 * 4 + 5,
              document.querySelector("#traffic .p99") !== null,
              Number(s.dataset.p99Max) > 0].join(" ");)"),
            "\"20 5 true true true\"");
  Shoot("console-traffic", "#traffic-strip");
  // The whole page, one of the burst's transactions open.
  ASSERT_OK(
      browser_->WaitFor(R"(return document.querySelector('tr[data-gid="burst-24"]') !== null;)"));
  ASSERT_OK(browser_->Click(R"(tr[data-gid="burst-24"])"));
  ASSERT_OK(
      browser_->WaitFor(R"(return document.querySelectorAll("#tx-timeline .call").length > 0;)"));
  Shoot("console-overview");
}

// ---------------------------------------------------------------------------------------------
// Force finish.

TEST_F(ConsolePicturesTest, ForceFinishShowsWhatWillNotBeCalledBeforeItIsConfirmed) {
  // inventory-svc's commit keeps failing: the transaction is stuck committing.
  ASSERT_EQ(Call(stack_->inventory(), "POST", "/admin/faults",
                 R"({"op":"commit","action":"fail","status":503})")
                .status,
            200);
  ASSERT_EQ(Call(treatyd(), "POST", "/v1/transactions",
                 R"({"gid":"stuck","mode":"2pc","branches":[)" +
                     stack_->InventoryBranch("stock", "A1", 1) + "," +
                     stack_->OrderBranch("order", "A1", 1) + "]}")
                .status,
            201);
  ASSERT_TRUE(WaitUntil([&] { return stack_->StatusOf("stuck") == "committing"; },
                        std::chrono::seconds(30)));
  ASSERT_OK(browser_->Navigate(treatyd().base_url() + "/?gid=stuck"));
  ASSERT_OK(browser_->WaitFor(
      R"(return document.getElementById("detail-status").textContent === "committing";)"));
  ASSERT_OK(browser_->Click("#force"));
  ASSERT_OK(browser_->Type("#force-reason", "stock committed by hand"));
  ASSERT_OK(browser_->Click("#force-check"));
  ASSERT_OK(browser_->WaitFor(R"(return !document.getElementById("force-confirm").hidden;)"));
  const std::string preview = Run(R"(return document.getElementById("force-preview").textContent)");
  EXPECT_NE(preview.find("These calls will not be made: stock commit"), std::string::npos)
      << preview;
  EXPECT_EQ(stack_->StatusOf("stuck"), "committing") << "nothing changes before the confirmation";
  Shoot("console-force", "#actions");
  ASSERT_OK(browser_->Click("#force-confirm"));
  ASSERT_OK(browser_->WaitFor(
      R"(return document.getElementById("detail-status").textContent === "committed";)"));
  HttpReply tx = Call(treatyd(), "GET", "/v1/transactions/stuck");
  EXPECT_NE(tx.body.find(
                R"("reason":"forced committed by anonymous@127.0.0.1: stock committed by hand")"),
            std::string::npos)
      << tx.body;
  EXPECT_NE(tx.body.find(R"("actor":"anonymous@127.0.0.1")"), std::string::npos) << tx.body;
}

}  // namespace
}  // namespace treaty::harness
