// Sagas end to end: named definitions loaded from YAML by treatyd, run against order-svc and
// inventory-svc on a real PostgreSQL; compensation order and concurrency observed at the
// participants; reload; crash recovery.

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

// Three stock steps in a chain, then a payment: a declined card undoes them in reverse.
constexpr const char* kChainSaga = R"(saga: chain
steps:
  - name: s1
    action: ${env.TREATY_DEMO_INVENTORY_URL}/saga/reserve
    compensate: ${env.TREATY_DEMO_INVENTORY_URL}/saga/release
    payload: { sku: A1, qty: 1 }
  - name: s2
    after: [s1]
    action: ${env.TREATY_DEMO_INVENTORY_URL}/saga/reserve
    compensate: ${env.TREATY_DEMO_INVENTORY_URL}/saga/release
    payload: { sku: B1, qty: 1 }
  - name: s3
    after: [s2]
    action: ${env.TREATY_DEMO_INVENTORY_URL}/saga/reserve
    compensate: ${env.TREATY_DEMO_INVENTORY_URL}/saga/release
    payload: { sku: C1, qty: 1 }
  - name: pay
    after: [s3]
    action: ${env.TREATY_DEMO_ORDER_URL}/saga/pay
    compensate: ${env.TREATY_DEMO_ORDER_URL}/saga/refund
    payload: { card: "${input.card}", amount: 3 }
)";

class SagaTest : public ::testing::Test {
 protected:
  void SetUp() override { Boot({}); }

  void Boot(std::vector<std::pair<std::string, std::string>> env) {
    stack_.reset();
    auto dir = TempDir::Create("sagas");
    ASSERT_TRUE(dir.ok());
    dir_ = std::move(*dir);
    chain_file_ = dir_.File("chain.yaml");
    std::ofstream(chain_file_) << kChainSaga;
    auto s = TreatyStack::Start(StackOptions{.treatyd_env = std::move(env),
                                             .saga_files = {PlaceOrderSagaFile(), chain_file_}});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
    for (const char* sku : {"A1", "B1", "C1"}) ASSERT_OK(stack_->SetStock(sku, 10));
  }

  Result<HttpReply> Start(const std::string& name, const std::string& body) {
    return HttpCall("POST", stack_->treatyd().base_url() + "/v1/sagas/" + name, body,
                    std::chrono::seconds(60));
  }

  std::string Query(const std::string& db, const std::string& sql) {
    return stack_->pg().QueryValue(db, sql).value();
  }

  TempDir dir_;
  std::string chain_file_;
  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(SagaTest, NamedSagaCommitsEndToEnd) {
  auto r = Start("place-order",
                 R"({"gid":"po-1","wait":true,"input":{"sku":"A1","qty":2,"card":"4242"}})");
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  EXPECT_EQ(ParseObject(r->body)->getValue<std::string>("status"), "committed") << r->body;
  EXPECT_EQ(stack_->Stock("A1").value(), "8/0/2");
  EXPECT_EQ(Query("orders", "SELECT status FROM orders WHERE gid = 'po-1'"), "placed");
  EXPECT_EQ(Query("orders", "SELECT status || ':' || amount FROM payments WHERE gid = 'po-1'"),
            "paid:2");
  auto tx =
      ParseObject(HttpCall("GET", stack_->treatyd().base_url() + "/v1/transactions/po-1")->body);
  EXPECT_EQ(tx->getValue<std::string>("mode"), "saga");
  EXPECT_EQ(tx->getValue<std::string>("definition").rfind("place-order@", 0), 0u);

  auto list = ParseObject(HttpCall("GET", stack_->treatyd().base_url() + "/v1/sagas")->body);
  EXPECT_EQ(list->getArray("sagas")->size(), 2u);
}

TEST_F(SagaTest, AFailingLastStepCompensatesTheEarlierOnesInReverseOrder) {
  auto r = Start("chain", R"({"gid":"ch-1","wait":true,"input":{"card":"declined"}})");
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  auto body = ParseObject(r->body);
  EXPECT_EQ(body->getValue<std::string>("status"), "aborted");
  EXPECT_EQ(body->getValue<std::string>("reason"), "step pay refused: HTTP 409: card declined");
  // The order the participant saw the compensations in.
  EXPECT_EQ(Query("inventory",
                  "SELECT string_agg(branch_id, ',' ORDER BY seq) FROM "
                  "treaty_barrier WHERE gid = 'ch-1' AND op = 'compensate'"),
            "s3,s2,s1");
  for (const char* sku : {"A1", "B1", "C1"}) EXPECT_EQ(stack_->Stock(sku).value(), "10/0/0") << sku;
  EXPECT_EQ(Query("orders", "SELECT count(*) FROM payments WHERE gid = 'ch-1'"), "0");
}

TEST_F(SagaTest, ADeclinedPaymentInTheMiddleOfTheDagCompensatesBothBranches) {
  auto r = Start("place-order",
                 R"({"gid":"po-2","wait":true,"input":{"sku":"A1","qty":3,"card":"declined"}})");
  ASSERT_TRUE(r.ok() && r->status == 200);
  EXPECT_EQ(ParseObject(r->body)->getValue<std::string>("status"), "aborted");
  EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0");
  EXPECT_EQ(Query("orders", "SELECT status FROM orders WHERE gid = 'po-2'"), "cancelled");
}

TEST_F(SagaTest, ParallelStepsRunConcurrently) {
  // Hold reserve-stock's action open at inventory; create-order, its sibling in the DAG, must
  // still run.
  ASSERT_TRUE(HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                       R"({"op":"saga/reserve","action":"hang"})")
                  ->status == 200);
  auto r = Start("place-order", R"({"gid":"po-3","input":{"sku":"A1","qty":1,"card":"4242"}})");
  ASSERT_TRUE(r.ok() && r->status == 201) << (r.ok() ? r->body : r.status().message());
  EXPECT_TRUE(WaitUntil(
      [&] { return Query("orders", "SELECT count(*) FROM orders WHERE gid = 'po-3'") == "1"; },
      std::chrono::seconds(30)))
      << "create-order did not run while reserve-stock was in flight";
  EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0") << "reserve-stock is still being held";
  EXPECT_EQ(Query("orders", "SELECT count(*) FROM payments WHERE gid = 'po-3'"), "0")
      << "the payment waits for both";
  ASSERT_TRUE(HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                       R"({"op":"saga/reserve","action":"off"})")
                  ->status == 200);
  EXPECT_EQ(stack_->WaitFinal("po-3"), "committed");
  EXPECT_EQ(stack_->Stock("A1").value(), "9/0/1");
}

TEST_F(SagaTest, AdHocSagaAndBadStartRequests) {
  std::string inv = stack_->inventory().base_url();
  std::string body = R"({"gid":"adhoc-1","mode":"saga","wait":true,"branches":[)"
                     R"({"id":"a","action":")" +
                     inv + R"(/saga/reserve","compensate":")" + inv +
                     R"(/saga/release","payload":{"sku":"B1","qty":4}},)"
                     R"({"id":"b","after":["a"],"action":")" +
                     inv +
                     R"(/saga/reserve",)"
                     R"("payload":{"sku":"C1","qty":1}}]})";
  auto r = HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions", body);
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : "");
  EXPECT_EQ(ParseObject(r->body)->getValue<std::string>("status"), "committed");
  EXPECT_EQ(stack_->Stock("B1").value(), "6/0/4");

  auto cycle = HttpCall(
      "POST", stack_->treatyd().base_url() + "/v1/transactions",
      R"({"mode":"saga","branches":[{"id":"a","action":"http://localhost/a","after":["a"]}]})");
  EXPECT_EQ(cycle->status, 400);
  EXPECT_EQ(ParseObject(cycle->body)->getObject("error")->getValue<std::string>("message"),
            "steps form a cycle: a -> a");
  EXPECT_EQ(Start("nope", "{}")->status, 404);
  auto missing = Start("place-order", R"({"input":{"sku":"A1"}})");
  EXPECT_EQ(missing->status, 400);
  EXPECT_EQ(ParseObject(missing->body)->getObject("error")->getValue<std::string>("field"),
            "input.qty");
  EXPECT_EQ(Start("place-order", R"({"input":"A1"})")->status, 400);
  EXPECT_EQ(Start("place-order", R"({"inputs":{}})")->status, 400);
}

TEST_F(SagaTest, ReloadKeepsTheOldDefinitionsWhenTheNewAreBad) {
  std::string base = stack_->treatyd().base_url();
  auto version_of = [&](const std::string& name) {
    auto list = ParseObject(HttpCall("GET", base + "/v1/sagas")->body)->getArray("sagas");
    for (size_t i = 0; i < list->size(); ++i) {
      if (list->getObject(i)->getValue<std::string>("name") == name) {
        return list->getObject(i)->getValue<std::string>("version");
      }
    }
    return std::string();
  };
  std::string before = version_of("chain");
  ASSERT_FALSE(before.empty());
  std::ofstream(chain_file_)
      << "saga: chain\nsteps:\n  - name: s1\n    action: http://localhost/a\n    after: [zz]\n";
  auto bad = HttpCall("POST", base + "/v1/sagas/reload");
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(
      bad->body.find(chain_file_ + ":5: steps[0].after: step s1: after names unknown step zz"),
      std::string::npos)
      << bad->body;
  EXPECT_EQ(version_of("chain"), before) << "a bad reload replaced the loaded definitions";
  // SIGHUP reloads too: first with the bad file (nothing changes), then with a good new one.
  ASSERT_OK(stack_->treatyd().process().Signal(SIGHUP));
  std::ofstream(chain_file_) << std::string(kChainSaga) + "# changed\n";
  ASSERT_OK(stack_->treatyd().process().Signal(SIGHUP));
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto v = version_of("chain");
        return !v.empty() && v != before;
      },
      std::chrono::seconds(10)))
      << "SIGHUP did not load the new definition";
  EXPECT_TRUE(stack_->treatyd().process().Running());
}

TEST_F(SagaTest, ABadDefinitionStopsStartUpAndCheckConfigNamesIt) {
  std::string bad = dir_.File("bad.yaml");
  std::ofstream(bad) << "saga: x\nsteps:\n  - name: a\n    action: http://localhost/a\n  - name: "
                        "a\n    action: http://localhost/b\n";
  std::string config = dir_.File("treaty.yaml");
  std::ofstream(config) << "listen: 127.0.0.1:0\nsagas: [bad.yaml]\n";
  for (const std::string flag : {"--check-config", "--config"}) {
    auto p = Process::Start(ProcessSpec{.name = "treatyd" + flag,
                                        .argv = {kTreatydPath, flag, config},
                                        .log_path = dir_.File("out" + flag)});
    ASSERT_TRUE(p.ok());
    auto code = (*p)->Wait(std::chrono::seconds(30));
    ASSERT_TRUE(code.ok()) << flag;
    EXPECT_EQ(*code, 2) << flag;
    EXPECT_NE((*p)->ReadLog().find(bad + ":5: steps[1].name: duplicate step name a"),
              std::string::npos)
        << (*p)->ReadLog();
  }
}

class SagaCrashTest : public SagaTest, public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override { Boot({{"TREATY_CRASH_POINT", GetParam()}}); }
};

TEST_P(SagaCrashTest, RecoveryEndsCommittedOrFullyCompensated) {
  std::string point = GetParam();
  bool declined = point.rfind("after_compensate", 0) == 0;
  Start("chain", std::string(R"({"gid":"crash-1","wait":true,"input":{"card":")") +
                     (declined ? "declined" : "4242") + "\"}}");
  ASSERT_TRUE(stack_->treatyd().process().Wait(std::chrono::seconds(30)).ok())
      << "treatyd did not crash at " << point;
  ASSERT_OK(stack_->RestartTreatyd({}));
  std::string outcome = stack_->WaitFinal("crash-1");
  ASSERT_FALSE(outcome.empty()) << "not finished after the restart";
  EXPECT_EQ(outcome, declined ? "aborted" : "committed");
  std::string expected = declined ? "10/0/0" : "9/0/1";
  for (const char* sku : {"A1", "B1", "C1"}) EXPECT_EQ(stack_->Stock(sku).value(), expected) << sku;
}

INSTANTIATE_TEST_SUITE_P(MidForwardAndMidCompensation, SagaCrashTest,
                         ::testing::Values("after_action:2", "after_decision",
                                           "after_compensate:1"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == ':') c = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace treaty::harness
