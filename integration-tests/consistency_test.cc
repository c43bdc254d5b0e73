// The promise under faults that a single crash does not show (#18): a coordinator paused past its
// lease while another takes over, and a store outage under load. Real processes on a real
// PostgreSQL; every fault is injected at a chosen point (a pause point, a fault switch,
// pg_ctl), never left to timing. Assertions are what a user would check: rows in the
// services' databases and the transaction's final state.

#include <Poco/JSON/Object.h>
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <thread>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

// Whether a log line of `s` names both `what` and `gid`.
bool Logged(Service& s, const std::string& what, const std::string& gid) {
  std::istringstream log(s.process().ReadLog());
  for (std::string line; std::getline(log, line);) {
    if (line.find(what) != std::string::npos && line.find("\"" + gid + "\"") != std::string::npos) {
      return true;
    }
  }
  return false;
}

std::string StatusAt(Service& treatyd, const std::string& gid) {
  auto r = HttpCall("GET", treatyd.base_url() + "/v1/transactions/" + gid);
  if (!r.ok() || r->status != 200) return "";
  return ParseObject(r->body)->getValue<std::string>("status");
}

// Switches a demo participant's fault for `op` ("hang", "fail" or "off"); true once it took.
bool SetFault(Service& participant, const std::string& op, const std::string& action) {
  auto r = HttpCall("POST", TreatyStack::Url(participant, "/admin/faults"),
                    R"({"op":")" + op + R"(","action":")" + action + R"("})");
  return r.ok() && r->status == 200;
}

// Begins (without waiting) a 2PC order of 2 A1 with both demo services; true when accepted.
bool BeginOrder(TreatyStack& s, const std::string& gid) {
  std::string body = R"({"gid":")" + gid + R"(","mode":"2pc","timeout":"20s","branches":[)" +
                     s.OrderBranch("order", "A1", 2) + "," + s.InventoryBranch("stock", "A1", 2) +
                     "]}";
  auto r = HttpCall("POST", s.treatyd().base_url() + "/v1/transactions", body);
  return r.ok() && r->status == 201;
}

TEST(ConsistencyTest, ACoordinatorPausedPastItsLeaseLeavesNoStepOfAnAbortedSagaApplied) {
  // treatyd A freezes right after the saga's first round of actions (stock reserved, order
  // created), before it records them: as a process paused by the OS or a long GC would.
  auto stack =
      TreatyStack::Start(StackOptions{.treatyd_env = {{"TREATY_PAUSE_POINT", "after_action"}},
                                      .saga_files = {PlaceOrderSagaFile()},
                                      .lease = "3s"});
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  ASSERT_OK(s.SetStock("A1", 10));
  auto b = Service::Start(ServiceSpec{.name = "treatyd-b",
                                      .binary = kTreatydPath,
                                      .config_yaml = TestTreatydConfig(s.pg(), "",
                                                                       "{ initial: 50ms, "
                                                                       "max: 500ms, multiplier: 2, "
                                                                       "jitter: 0.2 }",
                                                                       "3s"),
                                      .env = {{"TREATY_NODE_ID", "node-b"}}});
  ASSERT_TRUE(b.ok()) << b.status().message();
  Service& treatyd_b = **b;
  ASSERT_TRUE(BecomesReady(treatyd_b));

  auto started = HttpCall("POST", s.treatyd().base_url() + "/v1/sagas/place-order",
                          R"({"gid":"stale-1","timeout":"60s",)"
                          R"("input":{"sku":"A1","qty":2,"card":"4242"}})");
  ASSERT_TRUE(started.ok() && started->status == 201) << (started.ok() ? started->body : "");
  const pid_t a = s.treatyd().process().pid();
  ASSERT_TRUE(WaitUntil([&] { return IsStopped(a); }, std::chrono::seconds(30)));

  // Meanwhile the client gives up on the order; B takes the saga over once A's lease ran out and
  // compensates it.
  auto aborted = HttpCall("POST", treatyd_b.base_url() + "/v1/transactions/stale-1/abort", "{}");
  ASSERT_TRUE(aborted.ok() && aborted->status / 100 == 2) << (aborted.ok() ? aborted->body : "");
  ASSERT_TRUE(WaitUntil([&] { return StatusAt(treatyd_b, "stale-1") == "aborted"; },
                        std::chrono::seconds(30)));

  // A wakes up, still believing it drives the saga, its next step (the payment) ready to go.
  ASSERT_EQ(::kill(a, SIGCONT), 0);
  auto paid = [&] {
    return s.pg().QueryValue("orders",
                             "SELECT count(*) FROM payments WHERE gid = 'stale-1' "
                             "AND status = 'paid'");
  };
  // A either finds out it lost the lease (and logs it) or goes on to charge the card.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Logged(s.treatyd(), "LEASE_LOST", "stale-1") ||
               Logged(s.orders(), "saga/pay answered", "stale-1");
      },
      std::chrono::seconds(30)));
  EXPECT_FALSE(Logged(s.orders(), "saga/pay answered", "stale-1"))
      << "the paused coordinator called the next step after it lost its lease";
  EXPECT_EQ(paid().value(), "0") << "a payment of an aborted saga was charged and never refunded";
  EXPECT_EQ(StatusAt(treatyd_b, "stale-1"), "aborted");
  EXPECT_EQ(s.Stock("A1").value(), "10/0/0") << "the reserved stock was not given back";
  EXPECT_EQ(s.pg()
                .QueryValue("orders",
                            "SELECT count(*) FROM orders WHERE gid = 'stale-1' AND "
                            "status <> 'cancelled'")
                .value(),
            "0");
}

TEST(ConsistencyTest, AStoreRestartDoesNotHoldInterruptedTransactionsForALease) {
  // A lease and a retry backoff far longer than the test waits: only a resume that waits for
  // neither passes.
  auto stack = TreatyStack::Start(
      StackOptions{.retry = "{ initial: 20s, max: 60s, multiplier: 2, jitter: 0 }",
                   .lease = "120s",
                   .branch_call = "50s"});
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  ASSERT_OK(s.SetStock("A1", 10));
  // inventory holds its commit call open: the drive is in the middle of it when the store goes.
  ASSERT_TRUE(SetFault(s.inventory(), "commit", "hang"));
  ASSERT_TRUE(BeginOrder(s, "outage-1"));
  ASSERT_TRUE(
      WaitUntil([&] { return s.StatusOf("outage-1") == "committing"; }, std::chrono::seconds(30)));
  ASSERT_OK(s.pg().Stop());
  // The hung commit now answers 503: the drive cannot record it, nor give its lease back.
  ASSERT_TRUE(SetFault(s.inventory(), "commit", "off"));
  ASSERT_TRUE(WaitUntil([&] { return Logged(s.treatyd(), "drive interrupted", "outage-1"); },
                        std::chrono::seconds(30)));
  ASSERT_OK(s.pg().Restart());
  EXPECT_EQ(s.WaitFinal("outage-1", std::chrono::seconds(15)), "committed")
      << "the interrupted transaction waited for its lease or its backoff";
  EXPECT_EQ(s.Stock("A1").value(), "8/0/2");
  EXPECT_EQ(s.PreparedCount("inventory").value(), 0) << "inventory kept its prepared transaction";
}

TEST(ConsistencyTest, AnOperatorsAbortOfAHalfMessageNeverDropsTheEventOfACommittedOrder) {
  // No scheduled check-back during the test: only the operator's abort asks the service.
  auto stack =
      TreatyStack::Start(StackOptions{.with_broker = true,
                                      .treatyd_env = {{"TREATY_TIMEOUTS_MSG_CHECK_BACK", "10m"},
                                                      {"TREATY_KAFKA_DELIVERY_TIMEOUT", "2s"}}});
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  const std::string treatyd = s.treatyd().base_url();
  auto abort = [&](const std::string& gid) {
    return HttpCall("POST", treatyd + "/v1/transactions/" + gid + "/abort", "{}");
  };
  // order-svc commits the order locally, then dies before it submits the message.
  HttpCall("POST", TreatyStack::Url(s.orders(), "/msg/orders"),
           R"({"gid":"op-abort","sku":"A1","qty":2,"crash":"after_local_commit"})");
  ASSERT_TRUE(s.orders().process().Wait(std::chrono::seconds(10)).ok());
  ASSERT_EQ(s.StatusOf("op-abort"), "prepared");

  // The operator sees a stuck message and aborts it: the service cannot be asked, so nothing
  // changes and the answer says why.
  auto unreachable = abort("op-abort");
  ASSERT_TRUE(unreachable.ok());
  EXPECT_EQ(unreachable->status, 409) << unreachable->body;
  EXPECT_NE(unreachable->body.find("could not be asked"), std::string::npos) << unreachable->body;
  EXPECT_EQ(s.StatusOf("op-abort"), "prepared");

  // With the service back, the abort learns that the order committed: refused, and the event
  // goes out.
  ASSERT_OK(s.orders().Restart());
  auto committed = abort("op-abort");
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(committed->status, 409) << committed->body;
  EXPECT_NE(committed->body.find("committed"), std::string::npos) << committed->body;
  EXPECT_EQ(s.WaitFinal("op-abort"), "committed");
  EXPECT_EQ(s.OrderCount("op-abort").value(), 1);
  auto events = s.broker()->Consume("orders.events", 1, /*allow_extra=*/false, /*headers=*/true);
  ASSERT_TRUE(events.ok()) << events.status().message();
  ASSERT_EQ(events->size(), 1u);
  EXPECT_NE((*events)[0].find("treaty-gid=op-abort;"), std::string::npos) << (*events)[0];

  // A service that died before its local commit: the abort is confirmed by the service and the
  // message dropped.
  HttpCall("POST", TreatyStack::Url(s.orders(), "/msg/orders"),
           R"({"gid":"op-abort-2","sku":"A1","qty":2,"crash":"before_local_commit"})");
  ASSERT_TRUE(s.orders().process().Wait(std::chrono::seconds(10)).ok());
  ASSERT_OK(s.orders().Restart());
  auto rolled_back = abort("op-abort-2");
  ASSERT_TRUE(rolled_back.ok());
  EXPECT_EQ(rolled_back->status, 202) << rolled_back->body;
  EXPECT_EQ(s.WaitFinal("op-abort-2"), "aborted");
  EXPECT_EQ(s.OrderCount("op-abort-2").value(), 0);
}

// The value of a Prometheus sample line that starts with `series` (e.g. a counter with its
// labels), or -1.
double Sample(const std::string& metrics, const std::string& series) {
  size_t at = metrics.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(metrics.substr(at + series.size() + 2));
}

// Waits (30 s at most) until `treatyd` has looked for due work `times` times (its claim_due
// store calls): it had every chance to take what it might wrongly find due.
bool LookedForDueWork(Service& treatyd, int times) {
  double claims = -1;
  bool looked = WaitUntil(
      [&] {
        auto m = HttpCall("GET", treatyd.base_url() + "/metrics");
        claims = m.ok() ? Sample(m->body, "treaty_store_call_seconds_count{op=\"claim_due\"}") : -1;
        return claims >= times;
      },
      std::chrono::seconds(30));
  if (!looked) ADD_FAILURE() << "claims: " << claims;
  return looked;
}

// A second treatyd's environment: node "node-skewed", its clock `offset` off (libfaketime).
std::vector<std::pair<std::string, std::string>> SkewedNode(const std::string& offset) {
  auto env = ClockSkewEnv(offset);
  env.emplace_back("TREATY_NODE_ID", "node-skewed");
  return env;
}

TEST(ConsistencyTest, ACoordinatorWhoseClockRunsAMinuteAheadTakesNoLeaseThatIsStillRunning) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "libfaketime cannot be preloaded ahead of the AddressSanitizer runtime";
#endif
  auto stack = TreatyStack::Start(StackOptions{.lease = "30s", .branch_call = "14s"});
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  ASSERT_OK(s.SetStock("A1", 10));
  // The stack's treatyd drives a 2PC whose inventory prepare hangs: its lease runs for 30 s.
  ASSERT_TRUE(SetFault(s.inventory(), "prepare", "hang"));
  ASSERT_TRUE(BeginOrder(s, "skew-1"));
  // A second treatyd on the same store, its clock a minute ahead (libfaketime).
  auto skewed = Service::Start(ServiceSpec{
      .name = "treatyd-skewed",
      .binary = kTreatydPath,
      .config_yaml = TestTreatydConfig(s.pg(), "", "{ initial: 50ms, max: 500ms }", "30s"),
      .env = SkewedNode("+60s")});
  ASSERT_TRUE(skewed.ok()) << skewed.status().message();
  // It looks for due work every 50 ms: once it has looked 20 times, it had every chance.
  ASSERT_TRUE(LookedForDueWork(**skewed, 20));
  EXPECT_EQ(s.pg()
                .QueryValue("treaty",
                            "SELECT split_part(owner, '#', 1) FROM treaty.transactions WHERE gid = "
                            "'skew-1'")
                .value(),
            "test-node")
      << "a coordinator with a fast clock took a lease that was still running";
  ASSERT_TRUE(SetFault(s.inventory(), "prepare", "off"));
  std::string status = s.WaitFinal("skew-1");
  EXPECT_TRUE(status == "committed" || status == "aborted") << status;
  EXPECT_EQ(s.PreparedCount("inventory").value(), 0);
  EXPECT_EQ(s.PreparedCount("orders").value(), 0);
}

TEST(ConsistencyTest, AParticipantKilledHoldingAPreparedTransactionStartsAgainAndFinishesIt) {
  // Found by the chaos suite: order-svc, killed while its prepared transaction (an order and its
  // outbox event) waited for the commit, never served again: its start-up DDL waited for the
  // locks that very transaction holds, which only its own commit endpoint could release.
  auto stack = TreatyStack::Start();
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  ASSERT_OK(s.SetStock("A1", 10));
  ASSERT_TRUE(SetFault(s.orders(), "commit", "fail"));
  ASSERT_TRUE(BeginOrder(s, "held-1"));
  ASSERT_TRUE(WaitUntil(
      [&] {
        return s.StatusOf("held-1") == "committing" && s.PreparedCount("orders").value() == 1;
      },
      std::chrono::seconds(30)));
  ASSERT_TRUE(s.orders().Kill().ok());
  ASSERT_OK(s.orders().Restart());  // waits until it serves (30 s at most)
  EXPECT_EQ(s.WaitFinal("held-1"), "committed");
  EXPECT_EQ(s.OrderCount("held-1").value(), 1);
  EXPECT_EQ(s.PreparedCount("orders").value(), 0);
}

TEST(ConsistencyTest, ACoordinatorWhoseClockRunsAheadAbortsNoTransactionBeforeItsDeadline) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "libfaketime cannot be preloaded ahead of the AddressSanitizer runtime";
#endif
  // Found by the chaos suite: a treatyd whose clock ran 20 s ahead found an unsubmitted TCC
  // transaction of another treatyd past its deadline and aborted it while its client still
  // registered branches. Due times are compared on the store's clock now.
  auto stack = TreatyStack::Start();
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  ASSERT_OK(s.SetStock("A1", 10));
  auto skewed = Service::Start(ServiceSpec{
      .name = "treatyd-skewed",
      .binary = kTreatydPath,
      .config_yaml = TestTreatydConfig(s.pg(), "", "{ initial: 50ms, max: 500ms }", "5s"),
      .env = SkewedNode("+30s")});
  ASSERT_TRUE(skewed.ok()) << skewed.status().message();
  ASSERT_TRUE(BecomesReady(**skewed));
  // A client-driven TCC transaction with 20 s to be submitted, begun at the stack's treatyd.
  const std::string base = s.treatyd().base_url();
  auto begun = HttpCall("POST", base + "/v1/transactions",
                        R"({"gid":"early-1","mode":"tcc","timeout":"20s"})");
  ASSERT_TRUE(begun.ok() && begun->status == 201) << (begun.ok() ? begun->body : "");
  auto reg = HttpCall("POST", base + "/v1/transactions/early-1/branches",
                      s.InventoryTccBranch("stock", "A1", 2, /*with_try=*/false));
  ASSERT_TRUE(reg.ok() && reg->status == 201) << (reg.ok() ? reg->body : "");
  // The skewed treatyd looks for due work every 50 ms: once it has looked 20 times, it had
  // every chance to take the transaction for overdue.
  ASSERT_TRUE(LookedForDueWork(**skewed, 20));
  EXPECT_EQ(StatusAt(s.treatyd(), "early-1"), "active")
      << "a coordinator whose clock runs ahead aborted a transaction before its deadline";
  auto tried = HttpCall("POST", TreatyStack::Url(s.inventory(), "/tcc/try"),
                        TreatyStack::OpBody("early-1", "stock", "try", "tcc", "A1", 2));
  ASSERT_TRUE(tried.ok() && tried->status == 200) << (tried.ok() ? tried->body : "");
  auto submitted = HttpCall("POST", base + "/v1/transactions/early-1/submit", R"({"wait":true})");
  ASSERT_TRUE(submitted.ok()) << submitted.status().message();
  EXPECT_EQ(submitted->status, 200) << submitted->body;
  EXPECT_EQ(s.WaitFinal("early-1"), "committed");
  EXPECT_EQ(s.Stock("A1").value(), "8/0/2");
}

// treatyd's resident memory in KiB (VmRSS), or -1.
int64_t RssKib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

TEST(ConsistencyTest, AFloodAgainstAStuckParticipantIsRefusedWith503AndMemoryStaysBounded) {
#ifdef __SANITIZE_ADDRESS__
  GTEST_SKIP() << "the sanitizer's own memory would be measured, not treatyd's";
#endif
  auto stack = TreatyStack::Start();
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  ASSERT_OK(s.SetStock("A1", 1000000));
  // A treatyd with two workers and room for 40 waiting transactions, in front of an inventory
  // whose prepares hang: everything beyond that waits in treatyd, or is refused.
  ASSERT_OK(s.pg().CreateDatabase("flood"));
  auto t = Service::Start(
      ServiceSpec{.name = "treatyd-flood",
                  .binary = kTreatydPath,
                  .config_yaml = "listen: 127.0.0.1:0\nnode_id: flood\n"
                                 "store: { url: \"" +
                                 s.pg().Url("flood") +
                                 "\", pool_size: 8 }\n"
                                 "timeouts: { branch_call: 20s, prepare: 60s }\n"
                                 "scheduler: { workers: 2, lease: 60s, max_queued: 40 }\n"});
  ASSERT_TRUE(t.ok()) << t.status().message();
  Service& treatyd = **t;
  ASSERT_TRUE(BecomesReady(treatyd));
  ASSERT_TRUE(SetFault(s.inventory(), "prepare", "hang"));
  // Payloads near the 64 KiB limit: a treatyd that queued a copy of each would hold hundreds
  // of MiB.
  const std::string padding(60 * 1024, 'x');
  std::atomic<int> accepted{0}, refused{0}, other{0};
  std::atomic<bool> refusals_well_formed{true};
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < 300; ++i) {
        std::string gid = "flood-" + std::to_string(c) + "-" + std::to_string(i);
        std::string body = R"({"gid":")" + gid + R"(","mode":"2pc","branches":[{"id":"stock",)" +
                           R"("prepare":")" + TreatyStack::Url(s.inventory(), "/2pc/prepare") +
                           R"(","commit":")" + TreatyStack::Url(s.inventory(), "/2pc/commit") +
                           R"(","abort":")" + TreatyStack::Url(s.inventory(), "/2pc/abort") +
                           R"(","payload":{"sku":"A1","qty":1,"note":")" + padding + R"("}}]})";
        auto r = HttpCall("POST", treatyd.base_url() + "/v1/transactions", body);
        if (r.ok() && r->status == 201) {
          ++accepted;
        } else if (r.ok() && r->status == 503) {
          ++refused;
          if (r->headers["Retry-After"] != "1" ||
              r->body.find("\"overloaded\"") == std::string::npos) {
            refusals_well_formed = false;
          }
        } else {
          ++other;
        }
      }
    });
  }
  for (std::thread& c : clients) c.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(refused.load(), 0) << "1,200 transactions against 2 stuck workers were all accepted";
  EXPECT_TRUE(refusals_well_formed) << "a 503 without Retry-After: 1 or the overloaded code";
  EXPECT_LE(accepted.load(), 40 + 2 + 8) << "more accepted than the queue, workers and slack";
  // Nothing accepted is lost, nothing refused was stored.
  EXPECT_EQ(s.pg().QueryValue("flood", "SELECT count(*) FROM treaty.transactions").value(),
            std::to_string(accepted.load()));
  auto metrics = HttpCall("GET", treatyd.base_url() + "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_NE(metrics->body.find("treaty_rejected_total " + std::to_string(refused.load()) + "\n"),
            std::string::npos);
  const int64_t rss = RssKib(treatyd.process().pid());
  EXPECT_GT(rss, 0);
  EXPECT_LT(rss, 128 * 1024) << "treatyd's memory grew with the flood";
  SetFault(s.inventory(), "prepare", "off");
}

}  // namespace
}  // namespace treaty::harness
