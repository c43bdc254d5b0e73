// 2PC end to end: treatyd, order-svc and inventory-svc as real processes on a real PostgreSQL.
// Every assertion is on what a user would check: rows in the services' databases, prepared
// transactions left behind, and the transaction's final state at treatyd.

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "coordinator/store/migrations.h"
#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

class TwoPcTest : public ::testing::Test {
 protected:
  void SetUp() override { Boot({}); }

  void Boot(StackOptions options) {
    stack_.reset();
    auto s = TreatyStack::Start(std::move(options));
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
    ASSERT_OK(stack_->SetStock("A1", 10));
  }

  // POST /v1/transactions with an order and a stock branch for `qty` of A1.
  Result<HttpReply> Order(const std::string& gid, int qty, bool wait,
                          const std::string& sku = "A1") {
    std::string body = R"({"gid":")" + gid + R"(","mode":"2pc","timeout":"20s","wait":)" +
                       (wait ? "true" : "false") + R"(,"branches":[)" +
                       stack_->OrderBranch("order", sku, qty) + "," +
                       stack_->InventoryBranch("stock", sku, qty) + "]}";
    return HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions", body,
                    std::chrono::seconds(60));
  }

  Poco::JSON::Object::Ptr Get(const std::string& gid) {
    auto r = HttpCall("GET", stack_->treatyd().base_url() + "/v1/transactions/" + gid);
    EXPECT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
    return r.ok() && r->status == 200 ? ParseObject(r->body) : Poco::JSON::Object::Ptr();
  }

  // 200 transactions from 16 clients on four SKUs with too little stock for all of them.
  void RunTwoHundred();

  // Nothing left prepared in either service database.
  void ExpectNothingPrepared() {
    EXPECT_EQ(stack_->PreparedCount("orders").value(), 0) << "a prepared transaction in orders";
    EXPECT_EQ(stack_->PreparedCount("inventory").value(), 0)
        << "a prepared transaction in inventory";
  }

  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(TwoPcTest, CommitChangesBothDatabases) {
  auto r = Order("order-1", 3, /*wait=*/true);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(ParseObject(r->body)->getValue<std::string>("status"), "committed") << r->body;

  EXPECT_EQ(stack_->Stock("A1").value(), "7/0/3");
  EXPECT_EQ(stack_->OrderCount("order-1").value(), 1);
  EXPECT_EQ(stack_->pg().QueryValue("orders", "SELECT status || ':' || qty FROM orders").value(),
            "placed:3");
  ExpectNothingPrepared();

  auto tx = Get("order-1");
  ASSERT_TRUE(tx);
  EXPECT_EQ(tx->getValue<std::string>("mode"), "2pc");
  auto log = tx->getArray("log");
  ASSERT_EQ(log->size(), 3u);
  EXPECT_EQ(log->getObject(0)->getValue<std::string>("to"), "active");
  EXPECT_EQ(log->getObject(1)->getValue<std::string>("to"), "committing");
  EXPECT_EQ(log->getObject(2)->getValue<std::string>("to"), "committed");
  auto branches = tx->getArray("branches");
  ASSERT_EQ(branches->size(), 6u) << "prepare, commit and abort for each of two branches";
  for (size_t i = 0; i < branches->size(); ++i) {
    auto b = branches->getObject(i);
    std::string op = b->getValue<std::string>("op");
    EXPECT_EQ(b->getValue<std::string>("status"), op == "abort" ? "pending" : "succeeded");
    EXPECT_EQ(b->getValue<int>("attempts"), op == "abort" ? 0 : 1);
  }
}

TEST_F(TwoPcTest, OutOfStockAbortsAndChangesNothing) {
  auto r = Order("order-2", 11, /*wait=*/true);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->status, 200) << r->body;
  auto body = ParseObject(r->body);
  EXPECT_EQ(body->getValue<std::string>("status"), "aborted");
  EXPECT_EQ(body->getValue<std::string>("reason"),
            "branch stock refused prepare: HTTP 409: out of stock: sku A1 has 10, asked 11");
  EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0");
  EXPECT_EQ(stack_->OrderCount().value(), 0);
  ExpectNothingPrepared();
}

// How many times treatyd has attempted `op` on branch `branch` of `gid`.
int Attempts(const Poco::JSON::Object::Ptr& tx, const std::string& branch, const std::string& op) {
  if (!tx) return -1;
  auto branches = tx->getArray("branches");
  for (size_t i = 0; i < branches->size(); ++i) {
    auto b = branches->getObject(i);
    if (b->getValue<std::string>("id") == branch && b->getValue<std::string>("op") == op) {
      return b->getValue<int>("attempts");
    }
  }
  return -1;
}

TEST_F(TwoPcTest, ParticipantDownDuringCommitFinishesWhenItReturns) {
  // inventory-svc answers 503 to commit, so the transaction is decided but not finished...
  auto fault = HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                        R"({"op":"commit","action":"fail","status":503})");
  ASSERT_TRUE(fault.ok() && fault->status == 200);
  auto r = Order("order-3", 2, /*wait=*/false);
  ASSERT_TRUE(r.ok() && r->status == 201) << (r.ok() ? r->body : r.status().message());
  ASSERT_TRUE(WaitUntil([&] { return Attempts(Get("order-3"), "stock", "commit") >= 1; },
                        std::chrono::seconds(30)));
  // ...then the service goes away altogether.
  ASSERT_TRUE(stack_->inventory().Kill().ok());
  int before = Attempts(Get("order-3"), "stock", "commit");
  ASSERT_TRUE(WaitUntil([&] { return Attempts(Get("order-3"), "stock", "commit") >= before + 2; },
                        std::chrono::seconds(30)))
      << "treatyd stopped retrying the commit";
  auto tx = Get("order-3");
  EXPECT_EQ(tx->getValue<std::string>("status"), "committing");
  EXPECT_EQ(stack_->PreparedCount("inventory").value(), 1) << "the stock change waits, prepared";
  EXPECT_EQ(stack_->OrderCount("order-3").value(), 1) << "the order side committed already";

  ASSERT_OK(stack_->inventory().Restart());  // a fresh process: no fault switched on
  EXPECT_EQ(stack_->WaitFinal("order-3"), "committed");
  EXPECT_EQ(stack_->Stock("A1").value(), "8/0/2");
  ExpectNothingPrepared();
}

// The coordinator is killed at a crash point, then restarted without it: the transaction ends
// the same way on both services, and nothing is left prepared.
class TwoPcCrashTest : public TwoPcTest, public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override { Boot(StackOptions{.treatyd_env = {{"TREATY_CRASH_POINT", GetParam()}}}); }
};

TEST_P(TwoPcCrashTest, RecoveryFinishesTheTransactionConsistently) {
  auto r = Order("crash-1", 4, /*wait=*/true);  // may or may not get an answer
  auto exit_status = stack_->treatyd().process().Wait(std::chrono::seconds(30));
  ASSERT_TRUE(exit_status.ok()) << "treatyd did not crash at " << GetParam();
  EXPECT_EQ(*exit_status, 128 + 9) << "killed by SIGKILL";

  ASSERT_OK(stack_->RestartTreatyd(/*env=*/{}));
  std::string outcome = stack_->WaitFinal("crash-1");
  ASSERT_FALSE(outcome.empty()) << "not finished after the restart; status "
                                << stack_->StatusOf("crash-1");
  if (outcome == "committed") {
    EXPECT_EQ(stack_->Stock("A1").value(), "6/0/4");
    EXPECT_EQ(stack_->OrderCount("crash-1").value(), 1);
  } else {
    EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0");
    EXPECT_EQ(stack_->OrderCount("crash-1").value(), 0);
  }
  // A decision made before the crash is the one recovery carries out.
  std::string point = GetParam();
  if (point == "after_decision" || point == "after_commit") {
    EXPECT_EQ(outcome, "committed");
  }
  ExpectNothingPrepared();
}

INSTANTIATE_TEST_SUITE_P(EachCrashPoint, TwoPcCrashTest,
                         ::testing::Values("after_begin", "after_prepare", "after_decision",
                                           "after_commit"),
                         [](const auto& info) { return std::string(info.param); });

// A store written before migration 4 (a row per branch op in treaty.branches) is upgraded by the
// next treatyd without losing anything: a finished transaction reads back as it was (each op's
// status, attempts and last error, and its log), and an unfinished one is finished.
TEST_F(TwoPcTest, UpgradingTheStoreSchemaKeepsEveryTransaction) {
  auto stopped = stack_->treatyd().Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status().message();
  ASSERT_OK(stack_->RecreateStoreAt(3));

  // upgrade-half is decided (both branches prepared in their databases), not yet committed.
  for (auto [svc, branch] :
       {std::pair{&stack_->orders(), "order"}, std::pair{&stack_->inventory(), "stock"}}) {
    auto r = HttpCall("POST", TreatyStack::Url(*svc, "/2pc/prepare"),
                      TreatyStack::OpBody("upgrade-half", branch, "prepare", "2pc", "A1", 2));
    ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  }
  const std::string orders = stack_->orders().base_url() + "/2pc/";
  const std::string stock = stack_->inventory().base_url() + "/2pc/";
  auto ops = [&](const std::string& gid, const std::string& commit_status) {
    return "INSERT INTO treaty.branches (gid, branch_id, op, position, url, payload, status, "
           "attempts, last_error) VALUES "
           "('" +
           gid + "', 'order', 'prepare', 0, '" + orders +
           "prepare', "
           "'{\"sku\":\"A1\",\"qty\":2}', 'succeeded', 1, NULL), "
           "('" +
           gid + "', 'order', 'commit', 0, '" + orders +
           "commit', "
           "'{\"sku\":\"A1\",\"qty\":2}', '" +
           commit_status + "', " + (commit_status == "pending" ? "0" : "1") +
           ", NULL), "
           "('" +
           gid + "', 'order', 'abort', 0, '" + orders +
           "abort', "
           "'{\"sku\":\"A1\",\"qty\":2}', 'pending', 0, NULL), "
           "('" +
           gid + "', 'stock', 'prepare', 1, '" + stock +
           "prepare', "
           "'{\"sku\":\"A1\",\"qty\":2}', 'succeeded', 1, NULL), "
           "('" +
           gid + "', 'stock', 'commit', 1, '" + stock +
           "commit', "
           "'{\"sku\":\"A1\",\"qty\":2}', '" +
           commit_status + "', " +
           (commit_status == "pending" ? "1, 'HTTP 503: try later'" : "2, 'HTTP 503: try later'") +
           "), "
           "('" +
           gid + "', 'stock', 'abort', 1, '" + stock +
           "abort', "
           "'{\"sku\":\"A1\",\"qty\":2}', 'pending', 0, NULL);";
  };
  ASSERT_OK(stack_->pg().Execute(
      "treaty",
      "INSERT INTO treaty.transactions (gid, mode, status, request, request_digest, submitted, "
      "reason, deadline, next_attempt_at) VALUES "
      "('upgrade-done', '2pc', 'committed', '{}', 'd1', true, 'all 2 branches committed', "
      "now() + interval '1 hour', now()), "
      "('upgrade-half', '2pc', 'committing', '{}', 'd2', true, 'all 2 branches prepared', "
      "now() + interval '1 hour', now());" +
          ops("upgrade-done", "succeeded") + ops("upgrade-half", "pending") +
          // A finished saga: step b runs after a, a has a timeout, b a NULL last_error.
          "INSERT INTO treaty.transactions (gid, mode, status, request, request_digest, "
          "submitted, reason, deadline, next_attempt_at) VALUES ('upgrade-saga', 'saga', "
          "'committed', '{}', 'd3', true, 'every step done', now() + interval '1 hour', now());"
          "INSERT INTO treaty.branches (gid, branch_id, op, position, url, payload, timeout_ms, "
          "after_ids, status, attempts) VALUES "
          "('upgrade-saga', 'a', 'action', 0, 'http://127.0.0.1:9/a', '{}', 1500, '', "
          "'succeeded', 1), "
          "('upgrade-saga', 'b', 'action', 1, 'http://127.0.0.1:9/b', '{}', NULL, 'a', "
          "'succeeded', 3);"
          "INSERT INTO treaty.decision_log (gid, from_status, to_status, reason) VALUES "
          "('upgrade-done', NULL, 'active', 'begun with 2 branches'), "
          "('upgrade-done', 'active', 'committing', 'all 2 branches prepared'), "
          "('upgrade-done', 'committing', 'committed', 'all 2 branches committed'), "
          "('upgrade-half', NULL, 'active', 'begun with 2 branches'), "
          "('upgrade-half', 'active', 'committing', 'all 2 branches prepared');"));

  ASSERT_OK(stack_->RestartTreatyd());
  EXPECT_EQ(stack_->pg()
                .QueryValue("treaty", "SELECT max(version) FROM treaty.schema_migrations")
                .value(),
            std::to_string(store::Migrations().back().version));

  EXPECT_EQ(stack_->WaitFinal("upgrade-half"), "committed");
  EXPECT_EQ(stack_->Stock("A1").value(), "8/0/2");
  EXPECT_EQ(stack_->OrderCount("upgrade-half").value(), 1);
  ExpectNothingPrepared();
  auto half = Get("upgrade-half");
  ASSERT_TRUE(half);
  EXPECT_EQ(half->getArray("log")->size(), 3u);
  EXPECT_EQ(Attempts(half, "stock", "commit"), 2) << "the attempt before the upgrade counts";

  auto done = Get("upgrade-done");
  ASSERT_TRUE(done);
  EXPECT_EQ(done->getValue<std::string>("status"), "committed");
  EXPECT_EQ(done->getArray("log")->size(), 3u);
  auto branches = done->getArray("branches");
  ASSERT_EQ(branches->size(), 6u);
  std::string seen;
  for (size_t i = 0; i < branches->size(); ++i) {
    auto b = branches->getObject(i);
    seen += b->getValue<std::string>("id") + "/" + b->getValue<std::string>("op") + ":" +
            b->getValue<std::string>("status") + ":" +
            std::to_string(b->getValue<int>("attempts")) + ":" +
            b->optValue<std::string>("last_error", "") + " ";
    EXPECT_EQ(b->getValue<std::string>("url"),
              (i < 3 ? orders : stock) + b->getValue<std::string>("op"));
  }
  EXPECT_EQ(seen,
            "order/abort:pending:0: order/commit:succeeded:1: order/prepare:succeeded:1: "
            "stock/abort:pending:0: stock/commit:succeeded:2:HTTP 503: try later "
            "stock/prepare:succeeded:1: ");

  auto saga = Get("upgrade-saga");
  ASSERT_TRUE(saga);
  auto steps = saga->getArray("branches");
  ASSERT_EQ(steps->size(), 2u);
  EXPECT_EQ(steps->getObject(0)->getValue<std::string>("id"), "a");
  EXPECT_FALSE(steps->getObject(0)->has("after"));
  EXPECT_EQ(steps->getObject(1)->getValue<std::string>("id"), "b");
  ASSERT_TRUE(steps->getObject(1)->getArray("after"));
  EXPECT_EQ(steps->getObject(1)->getArray("after")->getElement<std::string>(0), "a");
  EXPECT_EQ(steps->getObject(1)->getValue<int>("attempts"), 3);
}

TEST_F(TwoPcTest, SweepRollsBackWhatTheCoordinatorNeverDecided) {
  Boot(StackOptions{.sweep_older_than = "300ms"});
  ASSERT_OK(stack_->SetStock("B1", 10));  // each ghost holds its own SKU's row lock
  // A prepare treatyd never asked for: the coordinator does not know this gid.
  std::string body = R"({"gid":"ghost-1","branch_id":"stock","op":"prepare","mode":"2pc",)"
                     R"("payload":{"sku":"A1","qty":5}})";
  auto p = HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/2pc/prepare"), body);
  ASSERT_TRUE(p.ok() && p->status == 200) << (p.ok() ? p->body : p.status().message());

  // And one whose transaction treatyd aborted without ever calling prepare: begun, a branch
  // registered, aborted by the client.
  std::string base = stack_->treatyd().base_url();
  auto begun = HttpCall("POST", base + "/v1/transactions", R"({"gid":"ghost-2","mode":"2pc"})");
  ASSERT_TRUE(begun.ok() && begun->status == 201) << (begun.ok() ? begun->body : "");
  auto reg = HttpCall("POST", base + "/v1/transactions/ghost-2/branches",
                      stack_->InventoryBranch("stock", "B1", 2));
  ASSERT_TRUE(reg.ok() && reg->status == 201) << (reg.ok() ? reg->body : "");
  auto p2 = HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/2pc/prepare"),
                     R"({"gid":"ghost-2","branch_id":"stock","op":"prepare","mode":"2pc",)"
                     R"("payload":{"sku":"B1","qty":2}})");
  ASSERT_TRUE(p2.ok() && p2->status == 200) << (p2.ok() ? p2->body : p2.status().message());
  auto ab = HttpCall("POST", base + "/v1/transactions/ghost-2/abort", R"({"wait":true})");
  ASSERT_TRUE(ab.ok() && ab->status == 200) << (ab.ok() ? ab->body : "");
  EXPECT_EQ(ParseObject(ab->body)->getValue<std::string>("status"), "aborted");

  EXPECT_TRUE(WaitUntil([&] { return stack_->PreparedCount("inventory").value() == 0; },
                        std::chrono::seconds(30)))
      << "the sweep left prepared transactions behind";
  EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0");
  EXPECT_EQ(stack_->Stock("B1").value(), "10/0/0");
  // A late prepare after the sweep's rollback is refused.
  auto late = HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/2pc/prepare"), body);
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->status, 409) << late->body;
}

TEST_F(TwoPcTest, TwoHundredConcurrentTransactionsKeepStockConsistent) { RunTwoHundred(); }

TEST_F(TwoPcTest, TwoHundredConcurrentTransactionsWithGroupCommit) {
  Boot(StackOptions{.treatyd_env = {{"TREATY_STORE_GROUP_COMMIT", "true"}}});
  RunTwoHundred();
}

void TwoPcTest::RunTwoHundred() {
  const std::map<std::string, int> initial = {{"S1", 40}, {"S2", 40}, {"S3", 40}, {"S4", 40}};
  for (const auto& [sku, n] : initial) ASSERT_OK(stack_->SetStock(sku, n));
  constexpr int kTransactions = 200;
  constexpr int kClients = 16;
  std::atomic<int> next{0}, committed{0}, aborted{0}, failed{0};
  std::map<std::string, std::atomic<int>> sold_by_sku;
  for (const auto& [sku, n] : initial) sold_by_sku[sku] = 0;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 rng(1234 + c);
      for (int i = next++; i < kTransactions; i = next++) {
        std::string sku = "S" + std::to_string(1 + rng() % 4);
        int qty = 1 + static_cast<int>(rng() % 3);
        auto r = Order("load-" + std::to_string(i), qty, /*wait=*/true, sku);
        std::string status;
        if (r.ok() && r->status == 200)
          status = ParseObject(r->body)->getValue<std::string>("status");
        if (status != "committed" && status != "aborted") {
          status = stack_->WaitFinal("load-" + std::to_string(i));
        }
        if (status == "committed") {
          ++committed;
          sold_by_sku[sku] += qty;
        } else if (status == "aborted") {
          ++aborted;
        } else {
          ++failed;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(committed + aborted, kTransactions);
  EXPECT_GT(aborted, 0) << "demand exceeds stock, so some must run out";
  EXPECT_GT(committed, 0);
  for (const auto& [sku, n] : initial) {
    auto row = stack_->pg().QueryValue(
        "inventory",
        "SELECT available || ',' || reserved || ',' || sold FROM stock WHERE sku = '" + sku + "'");
    ASSERT_TRUE(row.ok());
    int available = 0, reserved = 0, sold = 0;
    ASSERT_EQ(std::sscanf(row->c_str(), "%d,%d,%d", &available, &reserved, &sold), 3);
    EXPECT_EQ(available + reserved + sold, n) << sku;
    EXPECT_EQ(sold, sold_by_sku[sku].load()) << sku;
  }
  EXPECT_EQ(stack_->OrderCount().value(), committed.load());
  ExpectNothingPrepared();
}

TEST_F(TwoPcTest, KilledFromOutsideUnderLoadEveryTransactionEndsConsistently) {
  ASSERT_OK(stack_->SetStock("A1", 60));
  constexpr int kTransactions = 60;
  constexpr int kClients = 8;
  std::atomic<int> next{0}, accepted{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      for (int i = next++; i < kTransactions; i = next++) {
        // Answers are lost while treatyd is down; what counts is the state afterwards.
        auto r = Order("kill-" + std::to_string(i), 2, /*wait=*/false);
        if (r.ok() && r->status == 201) ++accepted;
      }
    });
  }
  // Kill it mid-stream, once a third of the transactions were accepted.
  ASSERT_TRUE(WaitUntil([&] { return accepted >= kTransactions / 3; }, std::chrono::seconds(60)));
  ASSERT_TRUE(stack_->treatyd().Kill().ok());
  for (auto& t : clients) t.join();
  ASSERT_OK(stack_->RestartTreatyd());

  int committed = 0, known = 0;
  for (int i = 0; i < kTransactions; ++i) {
    std::string gid = "kill-" + std::to_string(i);
    if (stack_->StatusOf(gid).empty()) continue;  // never accepted: treatyd was down
    ++known;
    std::string outcome = stack_->WaitFinal(gid);
    ASSERT_FALSE(outcome.empty()) << gid << " never finished: " << stack_->StatusOf(gid);
    int orders = stack_->OrderCount(gid).value();
    EXPECT_EQ(orders, outcome == "committed" ? 1 : 0) << gid << " " << outcome;
    committed += outcome == "committed";
  }
  EXPECT_GE(known, accepted.load());
  EXPECT_EQ(stack_->Stock("A1").value(),
            std::to_string(60 - 2 * committed) + "/0/" + std::to_string(2 * committed));
  EXPECT_EQ(stack_->OrderCount().value(), committed);
  ExpectNothingPrepared();
}

TEST_F(TwoPcTest, TwoCoordinatorsShareAStoreAndTheSurvivorFinishesTheOthersWork) {
  // A second treatyd on the same database, under another node id.
  auto second = Service::Start(ServiceSpec{.name = "treatyd-b",
                                           .binary = kTreatydPath,
                                           .config_yaml = TestTreatydConfig(stack_->pg()),
                                           .env = {{"TREATY_NODE_ID", "node-b"}}});
  ASSERT_TRUE(second.ok()) << second.status().message();
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto r = HttpCall("GET", (*second)->base_url() + "/readyz");
        return r.ok() && r->status == 200;
      },
      std::chrono::seconds(30)));
  // The first treatyd decides to commit, then cannot get the commit through...
  ASSERT_TRUE(HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                       R"({"op":"commit","action":"fail"})")
                  ->status == 200);
  ASSERT_EQ(Order("shared-1", 2, /*wait=*/false)->status, 201);
  ASSERT_TRUE(WaitUntil([&] { return stack_->StatusOf("shared-1") == "committing"; },
                        std::chrono::seconds(30)));
  // ...and dies. The survivor takes the transaction over once the lease runs out.
  ASSERT_TRUE(stack_->treatyd().Kill().ok());
  HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
           R"({"op":"commit","action":"off"})");
  std::string status;
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto r = HttpCall("GET", (*second)->base_url() + "/v1/transactions/shared-1");
        status =
            r.ok() && r->status == 200 ? ParseObject(r->body)->getValue<std::string>("status") : "";
        return status == "committed";
      },
      std::chrono::seconds(60)))
      << "the survivor did not finish it; status " << status;
  EXPECT_EQ(stack_->Stock("A1").value(), "8/0/2");
  EXPECT_EQ(stack_->OrderCount("shared-1").value(), 1);
  ExpectNothingPrepared();
  EXPECT_FALSE(stack_->treatyd().process().Running());
}

}  // namespace
}  // namespace treaty::harness
