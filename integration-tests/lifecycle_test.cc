// What operators and saga authors ask for (#21), against real processes: a saga step's output
// feeding a later step, a step's own retry policy, saga versions started by name@version while
// transactions run on them, force-finish with its audit, and treatyctl's saga plan and force.

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

using std::chrono::seconds;

constexpr const char* kClientToken = "client-token-lifecycle-01";
constexpr const char* kAdminToken = "admin-token-lifecycle-0042";

// A saga whose only step reserves stock; `note` makes another version of the same file.
std::string VersionedSaga(const std::string& note) {
  return "# " + note + R"(
saga: reserve-one
steps:
  - name: reserve
    action: ${env.TREATY_DEMO_INVENTORY_URL}/saga/reserve
    compensate: ${env.TREATY_DEMO_INVENTORY_URL}/saga/release
    payload: { sku: "${input.sku}", qty: 1 }
)";
}

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("lifecycle");
    ASSERT_TRUE(dir.ok());
    dir_ = std::move(*dir);
    // The admin token comes from a file: its name is who the decision log says forced.
    std::ofstream(dir_.File("ops-alice")) << kAdminToken << "\n";
    versioned_ = dir_.File("reserve-one.yaml");
    std::ofstream(versioned_) << VersionedSaga("v1");
    auto s = TreatyStack::Start(StackOptions{
        .treatyd_extra_yaml = std::string("auth: { client_tokens: [") + kClientToken +
                              "], admin_token_files: [" + dir_.File("ops-alice") + "] }\n",
        .saga_files = {PlaceOrderSagaFile(), versioned_},
        .client_token = kClientToken});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
    ASSERT_OK(stack_->SetStock("A1", 10));
  }

  HttpReply Call(const std::string& method, const std::string& path, const std::string& body = "",
                 const std::string& token = kClientToken) {
    auto r = HttpCall(method, stack_->treatyd().base_url() + path, body,
                      http::CallOptions{.timeout = seconds(60)}.WithBearer(token));
    EXPECT_TRUE(r.ok()) << method << " " << path << ": " << MessageOf(r);
    return r.ok() ? *r : HttpReply{};
  }

  void Fault(Service& s, const std::string& op, const std::string& action) {
    auto r = HttpCall("POST", s.base_url() + "/admin/faults",
                      R"({"op":")" + op + R"(","action":")" + action + R"(","status":503})");
    ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  }

  std::string Query(const std::string& db, const std::string& sql) {
    auto v = stack_->pg().QueryValue(db, sql);
    EXPECT_TRUE(v.ok()) << sql << ": " << MessageOf(v);
    return v.ok() ? *v : "";
  }

  // Runs treatyctl against treatyd; {exit status, what it printed}.
  std::pair<int, std::string> Treatyctl(std::vector<std::string> args,
                                        std::vector<std::pair<std::string, std::string>> env = {}) {
    args.insert(args.begin(), {kTreatyctlPath, "--url", stack_->treatyd().base_url()});
    auto p = Process::Start(ProcessSpec{.name = "treatyctl",
                                        .argv = args,
                                        .env = std::move(env),
                                        .log_path = dir_.File("ctl-" + std::to_string(++runs_))});
    if (!p.ok()) return {-1, p.status().message()};
    auto code = (*p)->Wait(seconds(60));
    return {code.ok() ? *code : -1, (*p)->ReadLog()};
  }

  TempDir dir_;
  std::string versioned_;
  std::unique_ptr<TreatyStack> stack_;
  int runs_ = 0;
};

TEST_F(LifecycleTest, ALaterStepIsBuiltFromAnEarlierStepsStoredOutput) {
  HttpReply r = Call("POST", "/v1/sagas/place-order",
                     R"({"gid":"out-1","wait":true,"input":{"sku":"A1","qty":2,"card":"4242"}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseObject(r.body)->getValue<std::string>("status"), "committed") << r.body;
  // The payment row names the order create-order made: its id reached pay through the output.
  const std::string order_id = Query("orders", "SELECT id FROM orders WHERE gid = 'out-1'");
  ASSERT_FALSE(order_id.empty());
  EXPECT_EQ(Query("orders", "SELECT order_id FROM payments WHERE gid = 'out-1'"), order_id);
  // The output is stored with the step and shown with it.
  auto tx = ParseObject(Call("GET", "/v1/transactions/out-1").body);
  auto branches = tx->getArray("branches");
  std::string shown;
  for (size_t i = 0; i < branches->size(); ++i) {
    auto b = branches->getObject(i);
    if (b->getValue<std::string>("id") == "create-order" &&
        b->getValue<std::string>("op") == "action") {
      shown = b->getObject("output")->get("order_id").toString();
    }
  }
  EXPECT_EQ(shown, order_id);
}

TEST_F(LifecycleTest, AStepThatUsesUpItsAttemptsFailsTheSagaWhichCompensates) {
  Fault(stack_->orders(), "saga/pay", "fail");
  const std::string inv = stack_->inventory().base_url();
  const std::string ord = stack_->orders().base_url();
  HttpReply r = Call("POST", "/v1/transactions",
                     R"({"gid":"retry-1","mode":"saga","wait":true,"timeout":"60s","branches":[)"
                     R"({"id":"reserve","action":")" +
                         inv + R"(/saga/reserve","compensate":")" + inv +
                         R"(/saga/release","payload":{"sku":"A1","qty":3}},)"
                         R"({"id":"pay","after":["reserve"],"action":")" +
                         ord + R"(/saga/pay","compensate":")" + ord +
                         R"(/saga/refund","payload":{"card":"4242","amount":3},)"
                         R"("retry":{"attempts":3,"backoff":"100ms"}}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto tx = ParseObject(Call("GET", "/v1/transactions/retry-1").body);
  EXPECT_EQ(tx->getValue<std::string>("status"), "aborted");
  EXPECT_EQ(
      tx->getValue<std::string>("reason").rfind("step pay gave up after 3 attempts: HTTP 503", 0),
      0u)
      << tx->getValue<std::string>("reason");
  auto branches = tx->getArray("branches");
  for (size_t i = 0; i < branches->size(); ++i) {
    auto b = branches->getObject(i);
    if (b->getValue<std::string>("id") == "pay" && b->getValue<std::string>("op") == "action") {
      EXPECT_EQ(b->getValue<int>("attempts"), 3);
      EXPECT_EQ(b->getObject("retry")->getValue<int>("attempts"), 3);
    }
  }
  EXPECT_EQ(*stack_->Stock("A1"), "10/0/0") << "the reservation was released";
  // Only saga steps take a policy.
  HttpReply twopc = Call("POST", "/v1/transactions",
                         R"({"mode":"2pc","branches":[{"id":"a","prepare":")" + inv +
                             R"(/2pc/prepare","commit":")" + inv + R"(/2pc/commit","abort":")" +
                             inv + R"(/2pc/abort","retry":{"attempts":2}}]})");
  EXPECT_EQ(twopc.status, 400);
  EXPECT_EQ(ParseObject(twopc.body)->getObject("error")->getValue<std::string>("field"),
            "branches[0].retry");
}

TEST_F(LifecycleTest, AnOlderVersionStaysStartableWhileTransactionsRunOnIt) {
  // v1's transaction waits: its participant does not answer.
  Fault(stack_->inventory(), "saga/reserve", "fail");
  HttpReply first = Call("POST", "/v1/sagas/reserve-one",
                         R"({"gid":"v1-a","timeout":"120s","input":{"sku":"A1"}})");
  ASSERT_EQ(first.status, 201) << first.body;
  auto def = ParseObject(Call("GET", "/v1/sagas/reserve-one").body);
  const std::string v1 = def->getValue<std::string>("version");
  // A new version is loaded; v1 stays listed, with its unfinished transaction.
  std::ofstream(versioned_) << VersionedSaga("v2");
  ASSERT_EQ(Call("POST", "/v1/sagas/reload", "", kAdminToken).status, 200);
  def = ParseObject(Call("GET", "/v1/sagas/reserve-one").body);
  const std::string v2 = def->getValue<std::string>("version");
  ASSERT_NE(v1, v2);
  auto versions = def->getArray("versions");
  ASSERT_EQ(versions->size(), 2u) << Poco::Dynamic::Var(versions).toString();
  std::map<std::string, std::pair<bool, int>> listed;
  for (size_t i = 0; i < versions->size(); ++i) {
    auto v = versions->getObject(i);
    listed[v->getValue<std::string>("version")] = {v->getValue<bool>("loaded"),
                                                   v->getValue<int>("unfinished")};
  }
  EXPECT_EQ(listed[v1], std::make_pair(false, 1));
  EXPECT_EQ(listed[v2], std::make_pair(true, 0));
  // v1 by name@version, while a transaction runs on it; the plain name is v2.
  HttpReply again = Call("POST", "/v1/sagas/reserve-one@" + v1,
                         R"({"gid":"v1-b","timeout":"120s","input":{"sku":"A1"}})");
  ASSERT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(
      ParseObject(Call("GET", "/v1/transactions/v1-b").body)->getValue<std::string>("definition"),
      "reserve-one@" + v1);
  EXPECT_EQ(Call("GET", "/v1/sagas/reserve-one@" + v1).status, 200);
  EXPECT_EQ(Call("POST", "/v1/sagas/reserve-one@000000000000", R"({"input":{"sku":"A1"}})").status,
            404);
  // Once nothing runs on v1, it can no longer be started.
  Fault(stack_->inventory(), "saga/reserve", "off");
  EXPECT_EQ(stack_->WaitFinal("v1-a"), "committed");
  EXPECT_EQ(stack_->WaitFinal("v1-b"), "committed");
  HttpReply gone = Call("POST", "/v1/sagas/reserve-one@" + v1, R"({"input":{"sku":"A1"}})");
  EXPECT_EQ(gone.status, 404) << gone.body;
  EXPECT_NE(gone.body.find("no unfinished transaction runs on it"), std::string::npos) << gone.body;
}

TEST_F(LifecycleTest, ForceFinishNeedsAnAdminAndRecordsWhoAndWhy) {
  // Order-svc's commit keeps failing: the transaction is stuck committing.
  Fault(stack_->orders(), "commit", "fail");
  HttpReply begun = Call("POST", "/v1/transactions",
                         R"({"gid":"stuck-1","mode":"2pc","branches":[)" +
                             stack_->InventoryBranch("inv", "A1", 1) + "," +
                             stack_->OrderBranch("ord", "A1", 1) + "]}");
  ASSERT_EQ(begun.status, 201) << begun.body;
  ASSERT_TRUE(WaitUntil([&] { return stack_->StatusOf("stuck-1") == "committing"; }, seconds(30)));

  const std::string body = R"({"status":"committed","reason":"order row fixed by hand"})";
  EXPECT_EQ(Call("POST", "/v1/transactions/stuck-1/force", body).status, 403) << "client token";
  HttpReply bad =
      Call("POST", "/v1/transactions/stuck-1/force", R"({"status":"done"})", kAdminToken);
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(ParseObject(bad.body)->getObject("error")->getValue<std::string>("field"), "status");
  HttpReply refused = Call("POST", "/v1/transactions/stuck-1/force",
                           R"({"status":"aborted","reason":"x"})", kAdminToken);
  EXPECT_EQ(refused.status, 409) << refused.body;

  auto [dry_code, dry_out] = Treatyctl({"--token", kAdminToken, "force", "stuck-1", "--status",
                                        "committed", "--reason", "order row fixed", "--dry-run"});
  EXPECT_EQ(dry_code, 0) << dry_out;
  EXPECT_NE(dry_out.find("would not be called:"), std::string::npos) << dry_out;
  EXPECT_NE(dry_out.find("ord"), std::string::npos) << dry_out;
  EXPECT_EQ(stack_->StatusOf("stuck-1"), "committing") << "a dry run changes nothing";

  auto [code, out] = Treatyctl({"--token", kAdminToken, "force", "stuck-1", "--status", "committed",
                                "--reason", "order row fixed by hand"});
  EXPECT_EQ(code, 0) << out;
  auto tx = ParseObject(Call("GET", "/v1/transactions/stuck-1").body);
  EXPECT_EQ(tx->getValue<std::string>("status"), "committed");
  EXPECT_EQ(tx->getValue<std::string>("reason"),
            "forced committed by ops-alice: order row fixed by hand");
  auto log = tx->getArray("log");
  auto last = log->getObject(static_cast<unsigned>(log->size() - 1));
  EXPECT_EQ(last->getValue<std::string>("actor"), "ops-alice");
  EXPECT_EQ(last->getValue<std::string>("from"), "committing");
  EXPECT_EQ(Query("treaty",
                  "SELECT actor FROM treaty.decision_log WHERE gid = 'stuck-1' "
                  "ORDER BY id DESC LIMIT 1"),
            "ops-alice");
  // No coordinator drives it any more: the failing commit's attempts stop growing.
  const std::string attempts =
      Query("treaty",
            "SELECT op_state -> 'ord/commit' ->> 'attempts' FROM treaty.transactions "
            "WHERE gid = 'stuck-1'");
  EXPECT_EQ(Call("POST", "/v1/transactions/stuck-1/retry", "", kAdminToken).status, 409);
  EXPECT_EQ(Query("treaty",
                  "SELECT op_state -> 'ord/commit' ->> 'attempts' FROM "
                  "treaty.transactions WHERE gid = 'stuck-1'"),
            attempts);
}

TEST_F(LifecycleTest, TreatyctlPlansASagaWithoutCallingAnything) {
  auto [code, out] = Treatyctl(
      {"saga", "plan", PlaceOrderSagaFile(), "--input", R"({"sku":"A1","qty":2,"card":"4242"})"},
      {{"TREATY_DEMO_INVENTORY_URL", stack_->inventory().base_url()},
       {"TREATY_DEMO_ORDER_URL", stack_->orders().base_url()}});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("1. reserve-stock, create-order\n  2. charge-payment"), std::string::npos)
      << out;
  EXPECT_NE(out.find(R"("order_id":"${steps.create-order.output.order_id}")"), std::string::npos)
      << out;
  EXPECT_NE(out.find("compensation order"), std::string::npos) << out;
  EXPECT_EQ(*stack_->Stock("A1"), "10/0/0") << "nothing was called";
  EXPECT_EQ(Query("orders", "SELECT count(*) FROM orders"), "0");
  auto [bad, why] = Treatyctl({"saga", "plan", PlaceOrderSagaFile(), "--input", R"({"sku":"A1"})"},
                              {{"TREATY_DEMO_INVENTORY_URL", "http://127.0.0.1:1"},
                               {"TREATY_DEMO_ORDER_URL", "http://127.0.0.1:2"}});
  EXPECT_EQ(bad, 2);
  EXPECT_NE(why.find("input.qty is missing"), std::string::npos) << why;
}

}  // namespace
}  // namespace treaty::harness
