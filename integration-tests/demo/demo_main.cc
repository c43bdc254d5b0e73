// treaty-demo: what scripts/demo runs. Starts the whole stack on free loopback ports with the
// test harness (a throwaway PostgreSQL, the dev Kafka broker, treatyd, order-svc and
// inventory-svc), runs each scenario end to end, prints what happened, and stops everything it
// started, also on Ctrl-C. Exit status: 0 when every scenario ended as it should.

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/recording_server.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::demo {
namespace {

using harness::HttpCall;
using harness::TreatyStack;

std::atomic<bool> g_interrupted{false};
std::mutex g_interrupt_mu;
std::condition_variable g_interrupt_cv;  // notified when g_interrupted is set

struct Row {
  std::string mode;
  std::string scenario;
  std::string gid;
  std::string outcome;
  std::string expected;
  long ms = 0;
  std::string changed;
};

std::string Field(const std::string& json, const std::string& key) {
  try {
    Poco::JSON::Parser parser;
    return parser.parse(json).extract<Poco::JSON::Object::Ptr>()->optValue<std::string>(key, "");
  } catch (const std::exception&) {
    return "";
  }
}

class Demo {
 public:
  Demo(bool keep, std::string relay_mode) : keep_(keep), relay_mode_(std::move(relay_mode)) {}

  int Run() {
    std::cout
        << "  starting PostgreSQL, the dev Kafka broker, treatyd, order-svc, inventory-svc ..."
        << std::flush;
    auto began = std::chrono::steady_clock::now();
    auto stack = TreatyStack::Start(harness::StackOptions{
        .with_broker = true,
        // Spans to a small collector in this process (ShowTrace).
        .treatyd_extra_yaml = "tracing: { otlp_endpoint: \"" + collector_.base_url() +
                              "/v1/traces\", flush_interval: 100ms }\n",
        .treatyd_env = {{"TREATY_TIMEOUTS_MSG_CHECK_BACK", "1s"}},
        .saga_files = {harness::PlaceOrderSagaFile()},
        .relay_mode = relay_mode_});
    if (!stack.ok()) {
      std::cout << " FAILED\n" << stack.status().message() << "\n";
      return 1;
    }
    stack_ = std::move(*stack);
    std::cout << " ok (" << Since(began) << " ms)\n";
    if (!stack_->SetStock("A1", 10).ok()) return 1;

    Scenario("2pc", "commit", "demo-2pc-commit", "committed",
             [&](const std::string& gid) { return Order2pc(gid, 2, /*wait=*/true); });
    Scenario("2pc", "out of stock", "demo-2pc-abort", "aborted",
             [&](const std::string& gid) { return Order2pc(gid, 50, /*wait=*/true); });
    Scenario("2pc", "treatyd killed after deciding", "demo-2pc-crash", "committed",
             [&](const std::string& gid) -> std::string {
               // Arm the crash point, place the order: treatyd dies right after the decision is
               // durable. Restarted, it finishes the commit from the store.
               if (!stack_->treatyd().Kill().ok()) return "could not stop treatyd";
               if (!stack_->RestartTreatyd({{"TREATY_CRASH_POINT", "after_decision"}}).ok()) {
                 return "treatyd did not restart";
               }
               Order2pc(gid, 1, /*wait=*/true);  // the answer is lost with the process
               if (!stack_->treatyd().process().Wait(std::chrono::seconds(30)).ok()) {
                 return "treatyd did not crash";
               }
               std::cout << "\n      treatyd was killed at the crash point; restarting it ..."
                         << std::flush;
               if (!stack_->RestartTreatyd({}).ok()) return "treatyd did not come back";
               return stack_->WaitFinal(gid);
             });

    Scenario("tcc", "commit", "demo-tcc-commit", "committed",
             [&](const std::string& gid) { return OrderTcc(gid, 2); });
    Scenario("tcc", "out of stock: cancelled", "demo-tcc-cancel", "aborted",
             [&](const std::string& gid) { return OrderTcc(gid, 50); });

    Scenario("saga", "place-order, paid", "demo-saga-paid", "committed",
             [&](const std::string& gid) { return PlaceOrderSaga(gid, "4242"); });
    Scenario("saga", "place-order, card declined", "demo-saga-declined", "aborted",
             [&](const std::string& gid) { return PlaceOrderSaga(gid, "declined"); });

    Scenario("msg", "order, event to Kafka", "demo-msg-ok", "committed",
             [&](const std::string& gid) { return MsgOrder(gid, ""); });
    Scenario("msg", "service died before submit", "demo-msg-crash", "committed",
             [&](const std::string& gid) -> std::string {
               // order-svc commits locally and dies before submitting: treatyd checks back.
               MsgOrder(gid, "after_local_commit");
               if (!stack_->orders().process().Wait(std::chrono::seconds(10)).ok()) {
                 return "order-svc did not crash";
               }
               std::cout << "\n      order-svc died after its local commit; restarting it, "
                            "treatyd checks back ..."
                         << std::flush;
               if (!stack_->orders().Restart().ok()) return "order-svc did not come back";
               return stack_->WaitFinal(gid);
             });

    ShowEvents();
    // A transaction of the treatyd still running: one killed at a crash point (the 2pc crash
    // scenario) loses the spans it had not exported yet, e.g. those of the 2pc commit just before.
    ShowTrace("demo-saga-paid");
    PrintSummary();
    if (keep_ && !failed_ && !g_interrupted) {
      std::cout << "\n--keep: the stack stays up at the addresses above; press Ctrl-C to stop it.\n"
                << std::flush;
      std::unique_lock<std::mutex> lock(g_interrupt_mu);
      g_interrupt_cv.wait(lock, [] { return g_interrupted.load(); });
      g_interrupted = false;  // a requested stop, not a failure
    }
    return failed_ ? 1 : 0;
  }

  // One transaction's trace: its trace id, and the spans treatyd exported to the collector.
  void ShowTrace(const std::string& gid) {
    if (g_interrupted || failed_) return;
    auto details = HttpCall("GET", stack_->treatyd().base_url() + "/v1/transactions/" + gid);
    const std::string trace = details.ok() ? Field(details->body, "trace_id") : "";
    std::cout << "  trace of " << gid << ": trace_id " << trace << " ..." << std::flush;
    const bool came = collector_.WaitFor(
        [&](const std::vector<harness::RecordedRequest>& requests) {
          for (const auto& r : requests) {
            if (r.body.find(trace) != std::string::npos &&
                r.body.find("\"treaty.transaction\"") != std::string::npos) {
              return true;
            }
          }
          return false;
        },
        std::chrono::seconds(30));
    if (trace.empty() || !came) {
      std::cout << " UNEXPECTED: the collector received no transaction span\n";
      failed_ = true;
      return;
    }
    std::cout << " the collector received:\n";
    std::printf("      %-20s %-16s %-16s %s\n", "span", "span_id", "parent", "attributes");
    for (const auto& r : collector_.Requests()) {
      try {
        Poco::JSON::Parser parser;
        auto body = parser.parse(r.body).extract<Poco::JSON::Object::Ptr>();
        auto resources = body->getArray("resourceSpans");
        for (size_t i = 0; i < resources->size(); ++i) {
          auto scopes = resources->getObject(i)->getArray("scopeSpans");
          for (size_t j = 0; j < scopes->size(); ++j) {
            auto spans = scopes->getObject(j)->getArray("spans");
            for (size_t k = 0; k < spans->size(); ++k) {
              auto s = spans->getObject(k);
              if (s->getValue<std::string>("traceId") != trace) continue;
              std::string attributes;
              auto list = s->getArray("attributes");
              for (size_t a = 0; a < list->size(); ++a) {
                auto at = list->getObject(a);
                const std::string key = at->getValue<std::string>("key");
                if (key == "treaty.gid" || key == "treaty.mode" || key == "url.full") continue;
                attributes +=
                    key + "=" + at->getObject("value")->getValue<std::string>("stringValue") + " ";
              }
              std::printf("      %-20s %-16s %-16s %s\n", s->getValue<std::string>("name").c_str(),
                          s->getValue<std::string>("spanId").c_str(),
                          s->optValue<std::string>("parentSpanId", "-").c_str(),
                          attributes.c_str());
            }
          }
        }
      } catch (const std::exception&) {
        std::cout << "      (a request that is not OTLP JSON)\n";
      }
    }
  }

  // The order events the scenarios wrote through order-svc's outbox: relayed to Kafka by
  // treaty-relay and counted once each by inventory-svc through its inbox.
  void ShowEvents() {
    if (g_interrupted || failed_) return;
    std::cout << "  outbox: order events to Kafka (treaty-relay, mode: " << relay_mode_
              << ") and into inventory ..." << std::flush;
    // The polling relay marks each row sent; the WAL relay reads the log and marks nothing.
    auto pending = [&]() -> Result<std::string> {
      if (relay_mode_ == "wal") return std::string("0");
      return stack_->pg().QueryValue("orders",
                                     "SELECT count(*) FROM treaty_outbox WHERE status <> 'sent'");
    };
    auto written = stack_->pg().QueryValue("orders", "SELECT count(*) FROM treaty_outbox");
    auto delivered = stack_->pg().QueryValue(
        "treaty",
        "SELECT count(*) FROM treaty.transactions t, jsonb_array_elements(t.ops) o "
        "WHERE o->>'op' = 'publish' AND t.status = 'committed'");
    std::string expected = written.ok() && delivered.ok()
                               ? std::to_string(std::stoi(*written) + std::stoi(*delivered))
                               : "?";
    auto counted = [&] {
      return stack_->pg().QueryValue("inventory", "SELECT count(*) FROM treaty_inbox");
    };
    bool ok = harness::WaitUntil(
        [&] {
          auto p = pending();
          auto c = counted();
          return p.ok() && *p == "0" && c.ok() && *c == expected;
        },
        std::chrono::seconds(60));
    auto sales =
        stack_->pg().QueryValue("inventory",
                                "SELECT 'placed ' || coalesce(sum(placed), 0) || ', cancelled ' || "
                                "coalesce(sum(cancelled), 0) FROM sales");
    std::cout << (ok ? " ok\n" : " UNEXPECTED\n") << "      " << (written.ok() ? *written : "?")
              << " events from order-svc's outbox (relayed) and "
              << (delivered.ok() ? *delivered : "?")
              << " msg events (delivered by treatyd) on topic orders.events;\n"
                 "      inventory-svc applied each once through its inbox: units "
              << (sales.ok() ? *sales : "?") << "\n";
    failed_ = failed_ || !ok;
    rows_.push_back(Row{"outbox", "order events relayed and consumed", "-",
                        ok ? "delivered" : "missing", "delivered", 0,
                        expected + " events; inventory counted " + (sales.ok() ? *sales : "?")});
  }

 private:
  static long Since(std::chrono::steady_clock::time_point t) {
    return static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t)
            .count());
  }

  // Places an order of `qty` A1 as one 2PC transaction; returns its final status.
  std::string Order2pc(const std::string& gid, int qty, bool wait) {
    std::string body = R"({"gid":")" + gid + R"(","mode":"2pc","timeout":"10s","wait":)" +
                       (wait ? "true" : "false") + R"(,"branches":[)" +
                       stack_->OrderBranch("order", "A1", qty) + "," +
                       stack_->InventoryBranch("stock", "A1", qty) + "]}";
    auto r = HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions", body,
                      std::chrono::seconds(30));
    return r.ok() ? Field(r->body, "status") : "";
  }

  // Places an order of `qty` A1 as one TCC transaction; returns its final status.
  std::string OrderTcc(const std::string& gid, int qty) {
    std::string body = R"({"gid":")" + gid + R"(","mode":"tcc","timeout":"10s","wait":true,)" +
                       R"("branches":[)" + stack_->OrderTccBranch("order", "A1", qty) + "," +
                       stack_->InventoryTccBranch("stock", "A1", qty) + "]}";
    auto r = HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions", body,
                      std::chrono::seconds(30));
    return r.ok() ? Field(r->body, "status") : "";
  }

  // Starts the named saga place-order (config/sagas/place-order.yaml), showing the request.
  std::string PlaceOrderSaga(const std::string& gid, const std::string& card) {
    std::string body = R"({"gid":")" + gid +
                       R"(","wait":true,"input":{"sku":"A1","qty":1,"card":")" + card + R"("}})";
    std::cout << "\n      $ curl " << stack_->treatyd().base_url() << "/v1/sagas/place-order -d '"
              << body << "'";
    auto r = HttpCall("POST", stack_->treatyd().base_url() + "/v1/sagas/place-order", body,
                      std::chrono::seconds(30));
    if (r.ok()) std::cout << "\n      " << r->body << "\n     ";
    if (!r.ok()) return "";
    const std::string status = Field(r->body, "status");
    if (status == "committed") {
      // charge-payment's payload named create-order's output: the payment row carries its id.
      auto order =
          stack_->pg().QueryValue("orders", "SELECT id FROM orders WHERE gid = '" + gid + "'");
      auto paid = stack_->pg().QueryValue(
          "orders",
          "SELECT coalesce(order_id::text, 'none') FROM payments WHERE gid = '" + gid + "'");
      std::cout << " create-order answered order_id " << (order.ok() ? *order : "?")
                << "; charge-payment's payload took it from that output: the payment is for order "
                << (paid.ok() ? *paid : "?") << "\n     ";
      if (!order.ok() || !paid.ok() || *order != *paid) return "payment not linked to its order";
    }
    return status;
  }

  // order-svc places an order as a transactional message (prepare, local commit, submit).
  std::string MsgOrder(const std::string& gid, const std::string& crash) {
    std::string body = R"({"gid":")" + gid + R"(","sku":"A1","qty":1)" +
                       (crash.empty() ? std::string() : R"(,"crash":")" + crash + "\"") + "}";
    auto r = HttpCall("POST", stack_->orders().base_url() + "/msg/orders", body,
                      std::chrono::seconds(30));
    return r.ok() ? Field(r->body, "status") : "";
  }

  std::string Changes(const std::string& gid) {
    auto stock = stack_->Stock("A1");
    auto orders = stack_->pg().QueryValue(
        "orders",
        "SELECT coalesce(string_agg(status, ','), 'none') FROM orders WHERE gid = '" + gid + "'");
    return "inventory A1 available/frozen/sold " + (stock.ok() ? *stock : "?") + "; order " +
           (orders.ok() ? *orders : "?");
  }

  template <typename F>
  void Scenario(const std::string& mode, const std::string& name, const std::string& gid,
                const std::string& expected, F&& run) {
    if (g_interrupted || failed_) return;
    std::cout << "  " << mode << ": " << name << " ..." << std::flush;
    auto began = std::chrono::steady_clock::now();
    std::string outcome = run(gid);
    Row row{mode, name, gid, outcome, expected, Since(began), Changes(gid)};
    auto details = HttpCall("GET", stack_->treatyd().base_url() + "/v1/transactions/" + gid);
    std::string reason = details.ok() ? Field(details->body, "reason") : "";
    bool ok = outcome == expected;
    failed_ = failed_ || !ok;
    std::cout << (ok ? " " : " UNEXPECTED ") << outcome << " (" << row.ms << " ms)\n"
              << "      " << row.changed << "\n";
    if (!reason.empty()) std::cout << "      reason: " << reason << "\n";
    rows_.push_back(std::move(row));
  }

  void PrintSummary() {
    std::cout << "\nTreaty demo summary\n";
    std::printf("  %-6s %-33s %-19s %-10s %5s  %s\n", "mode", "scenario", "gid", "outcome", "ms",
                "what changed");
    for (const Row& r : rows_) {
      std::printf("  %-6s %-33s %-19s %-10s %5ld  %s\n", r.mode.c_str(), r.scenario.c_str(),
                  r.gid.c_str(), r.outcome.empty() ? "(none)" : r.outcome.c_str(), r.ms,
                  r.changed.c_str());
    }
    if (stack_) {
      std::cout << "\n  console       " << stack_->treatyd().base_url() << "/\n"
                << "  treatyd       " << stack_->treatyd().base_url() << "\n"
                << "  order-svc     " << stack_->orders().base_url() << "\n"
                << "  inventory-svc " << stack_->inventory().base_url() << "\n"
                << "  PostgreSQL    " << stack_->pg().Url("") << "\n";
      if (stack_->broker())
        std::cout << "  Kafka (dev)   " << stack_->broker()->bootstrap() << "\n";
      if (stack_->relay())
        std::cout << "  treaty-relay  " << stack_->relay()->base_url()
                  << "/metrics (mode: " << relay_mode_ << ")\n";
    }
    if (g_interrupted) {
      std::cout << "\nInterrupted: stopping everything.\n";
    } else if (failed_) {
      std::cout << "\nThe demo FAILED (see above); stopping everything.\n";
    } else {
      std::cout << "\nEvery scenario ended as it should"
                << (keep_ ? ".\n" : "; stopping everything.\n");
    }
    std::cout << std::flush;
  }

  const bool keep_;
  harness::RecordingServer collector_;  // receives treatyd's spans (OTLP/HTTP JSON)
  const std::string relay_mode_;
  bool failed_ = false;
  std::vector<Row> rows_;
  std::unique_ptr<TreatyStack> stack_;
};

}  // namespace
}  // namespace treaty::demo

int main(int argc, char** argv) {
  bool keep = false;
  std::string relay_mode = "wal";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--keep") {
      keep = true;
    } else if (a == "--relay" && i + 1 < argc &&
               (std::string(argv[i + 1]) == "wal" || std::string(argv[i + 1]) == "polling")) {
      relay_mode = argv[++i];
    } else {
      std::cerr << "usage: scripts/demo [--keep] [--relay wal|polling]\n"
                   "  --keep: leave the stack running until Ctrl-C\n"
                   "  --relay: treaty-relay's mode for order-svc's outbox (default wal: the\n"
                   "           write-ahead log through a replication slot; polling: the table)\n";
      return 2;
    }
  }
  // Ctrl-C and SIGTERM are taken by a watcher thread that only raises a flag, so that the main
  // thread, which started every process, stops them all in order.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    sigwait(&set, &sig);
    {
      std::lock_guard<std::mutex> lock(treaty::demo::g_interrupt_mu);
      treaty::demo::g_interrupted = true;
    }
    treaty::demo::g_interrupt_cv.notify_all();
  }).detach();

  std::cout << "Treaty demo\n";
  int code;
  {
    treaty::demo::Demo demo(keep, relay_mode);
    code = demo.Run();
  }
  if (treaty::demo::g_interrupted) code = 130;
  std::cout << (code == 0 ? "Stopped. Demo passed.\n" : "Stopped. Demo did not pass.\n");
  return code;
}
