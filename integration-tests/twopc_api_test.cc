// The transactions REST API against a real treatyd: bad input answered with the field it
// concerns and nothing stored, idempotent submission, the begin-register-submit form, listing
// and retry.

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

class TwoPcApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Long backoffs: a stuck transaction here finishes in time only when told to retry.
    auto s = TreatyStack::Start(StackOptions{.retry = "{ initial: 20s, max: 60s }"});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = s->release();
    ASSERT_TRUE(stack_->SetStock("A1", 1000).ok());
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }

  HttpReply Call(const std::string& method, const std::string& path, const std::string& body = "") {
    auto r = HttpCall(method, stack_->treatyd().base_url() + path, body, std::chrono::seconds(60));
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : HttpReply{};
  }

  std::string Body(const std::string& gid, int qty) {
    return R"({"gid":")" + gid + R"(","mode":"2pc","branches":[)" +
           stack_->OrderBranch("order", "A1", qty) + "," +
           stack_->InventoryBranch("stock", "A1", qty) + "]}";
  }

  int CountStored() {
    auto r = Call("GET", "/v1/transactions?limit=1000");
    return static_cast<int>(ParseObject(r.body)->getArray("transactions")->size());
  }

  static TreatyStack* stack_;
};

TreatyStack* TwoPcApiTest::stack_ = nullptr;

TEST_F(TwoPcApiTest, BadInputIsRefusedWithTheFieldAndNothingIsStored) {
  int stored = CountStored();
  std::string stock = stack_->InventoryBranch("stock", "A1", 1);
  struct Case {
    std::string body;
    int status;
    std::string code;
    std::string field;
  };
  std::vector<Case> cases = {
      {"not json", 400, "invalid_json", ""},
      {"[1,2]", 400, "invalid_json", ""},
      {"", 400, "invalid_json", ""},
      {R"({"branches":[]})", 400, "invalid", "mode"},
      {R"({"mode":"xa"})", 400, "invalid", "mode"},
      {R"({"mode":2})", 400, "invalid", "mode"},
      {R"({"mode":"2pc","colour":"red"})", 400, "invalid", "colour"},
      {R"({"mode":"2pc","gid":"has space"})", 400, "invalid", "gid"},
      {R"({"mode":"2pc","gid":7})", 400, "invalid", "gid"},
      {R"({"mode":"2pc","wait":"yes"})", 400, "invalid", "wait"},
      {R"({"mode":"2pc","timeout":"soon"})", 400, "invalid", "timeout"},
      {R"({"mode":"2pc","timeout":"0s"})", 400, "invalid", "timeout"},
      {R"({"mode":"2pc","branches":{}})", 400, "invalid", "branches"},
      {R"({"mode":"2pc","branches":[]})", 400, "invalid", "branches"},
      {R"({"mode":"2pc","branches":[7]})", 400, "invalid", "branches[0]"},
      {R"({"mode":"2pc","branches":[{"prepare":"http://localhost/p","commit":"http://localhost/c","abort":"http://localhost/a"}]})",
       400, "invalid", "branches[0].id"},
      {R"({"mode":"2pc","branches":[{"id":"x","commit":"http://localhost/c","abort":"http://localhost/a"}]})",
       400, "invalid", "branches[0].prepare"},
      {R"({"mode":"2pc","branches":[{"id":"x","prepare":"ftp://a/p","commit":"http://localhost/c","abort":"http://localhost/a"}]})",
       400, "invalid", "branches[0].prepare"},
      {R"({"mode":"2pc","branches":[{"id":"x","prepare":"http:///p","commit":"http://localhost/c","abort":"http://localhost/a"}]})",
       400, "invalid", "branches[0].prepare"},
      {R"({"mode":"2pc","branches":[{"id":"x","prepare":"http://localhost/p","commit":"http://localhost/c","abort":"http://localhost/a","try":"http://localhost/t"}]})",
       400, "invalid", "branches[0].try"},
      {R"({"mode":"2pc","branches":[{"id":"x","prepare":"http://localhost/p","commit":"http://localhost/c","abort":"http://localhost/a","timeout":"x"}]})",
       400, "invalid", "branches[0].timeout"},
      {R"({"mode":"2pc","branches":[)" + stock + "," + stock + "]}", 400, "invalid",
       "branches[1].id"},
      {R"({"mode":"2pc","branches":[{"id":"a b","prepare":"http://localhost/p","commit":"http://localhost/c","abort":"http://localhost/a"}]})",
       400, "invalid", "branches[0].id"},
      // PostgreSQL cannot store U+0000; an escaped backslash before "u0000" is plain text.
      {R"({"mode":"2pc","branches":[{"id":"x","prepare":"http://localhost/p","commit":"http://localhost/c","abort":"http://localhost/a","payload":{"note":"a\u0000b"}}]})",
       400, "invalid", "branches[0].payload.note"},
      {R"({"mode":"msg","query":"http://localhost/q","messages":[{"topic":"t","payload":"\u0000"}]})",
       400, "invalid", "messages[0].payload"},
  };
  for (const Case& c : cases) {
    HttpReply r = Call("POST", "/v1/transactions", c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    EXPECT_EQ(r.content_type, "application/json") << c.body;
    auto err = ParseObject(r.body)->getObject("error");
    ASSERT_TRUE(err) << r.body;
    EXPECT_EQ(err->getValue<std::string>("code"), c.code) << c.body << " -> " << r.body;
    EXPECT_EQ(err->optValue<std::string>("field", ""), c.field) << c.body << " -> " << r.body;
    EXPECT_FALSE(err->getValue<std::string>("message").empty());
  }
  // Over the body limit: 413.
  std::string huge = R"({"mode":"2pc","gid":"big","branches":[{"id":"x","payload":")" +
                     std::string(2 << 20, 'x') + "\"}]}";
  EXPECT_EQ(Call("POST", "/v1/transactions", huge).status, 413);
  EXPECT_EQ(Call("GET", "/v1/transactions?limit=0").status, 400);
  EXPECT_EQ(Call("GET", "/v1/transactions?status=done").status, 400);
  EXPECT_EQ(Call("GET", "/v1/transactions?colour=red").status, 400);
  EXPECT_EQ(Call("GET", "/v1/transactions/nope").status, 404);
  EXPECT_EQ(Call("DELETE", "/v1/transactions/nope").status, 405);
  EXPECT_EQ(CountStored(), stored) << "a refused request stored something";
  std::string literal = R"({"mode":"2pc","gid":"backslash-u","wait":true,"branches":[)" +
                        stack_->OrderBranch("order", "A1", 1) + "," + stock + "]}";
  literal.insert(literal.find(R"("payload":{)") + 11, R"("note":"a\\u0000b",)");
  HttpReply ok = Call("POST", "/v1/transactions", literal);
  EXPECT_EQ(ok.status, 200) << literal << " -> " << ok.body;
}

TEST_F(TwoPcApiTest, SameGidAndBodyTwiceIsOneTransaction) {
  HttpReply first = Call("POST", "/v1/transactions", Body("idem-1", 1));
  ASSERT_EQ(first.status, 201) << first.body;
  HttpReply again = Call("POST", "/v1/transactions", Body("idem-1", 1));
  EXPECT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(ParseObject(again.body)->getValue<std::string>("gid"), "idem-1");
  // The same body with wait: still the same transaction, and its outcome.
  std::string with_wait = Body("idem-1", 1);
  with_wait.insert(1, R"("wait":true,)");
  HttpReply waited = Call("POST", "/v1/transactions", with_wait);
  EXPECT_EQ(waited.status, 200) << waited.body;
  EXPECT_EQ(ParseObject(waited.body)->getValue<std::string>("status"), "committed");
  EXPECT_EQ(stack_->OrderCount("idem-1").value(), 1) << "one transaction, one order";

  HttpReply other = Call("POST", "/v1/transactions", Body("idem-1", 2));
  EXPECT_EQ(other.status, 409) << other.body;
  EXPECT_EQ(ParseObject(other.body)->getObject("error")->getValue<std::string>("code"), "conflict");
}

// Gids are plain text everywhere: ones spelled like SQL's NULL commit like any other (the store
// passes batches of gids as arrays, where an unquoted NULL would be no gid at all).
TEST_F(TwoPcApiTest, AGidSpelledNullIsAGidLikeAnyOther) {
  for (const char* gid : {"null", "NULL"}) {
    std::string body = Body(gid, 1);
    body.insert(1, R"("wait":true,)");
    HttpReply r = Call("POST", "/v1/transactions", body);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(ParseObject(r.body)->getValue<std::string>("status"), "committed") << gid;
    EXPECT_EQ(stack_->OrderCount(gid).value(), 1) << gid;
  }
}

TEST_F(TwoPcApiTest, BeginRegisterThenSubmit) {
  ASSERT_EQ(
      Call("POST", "/v1/transactions", R"({"gid":"reg-1","mode":"2pc","timeout":"30s"})").status,
      201);
  EXPECT_EQ(
      Call("POST", "/v1/transactions/reg-1/branches", stack_->OrderBranch("order", "A1", 1)).status,
      201);
  EXPECT_EQ(
      Call("POST", "/v1/transactions/reg-1/branches", stack_->InventoryBranch("stock", "A1", 1))
          .status,
      201);
  HttpReply dup =
      Call("POST", "/v1/transactions/reg-1/branches", stack_->InventoryBranch("stock", "A1", 1));
  EXPECT_EQ(dup.status, 409) << dup.body;
  HttpReply bad = Call("POST", "/v1/transactions/reg-1/branches", R"({"id":"x"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(ParseObject(bad.body)->getObject("error")->getValue<std::string>("field"), "prepare");
  EXPECT_EQ(stack_->StatusOf("reg-1"), "active");
  EXPECT_EQ(stack_->OrderCount("reg-1").value(), 0) << "nothing runs before submit";

  HttpReply submitted = Call("POST", "/v1/transactions/reg-1/submit", R"({"wait":true})");
  ASSERT_EQ(submitted.status, 200) << submitted.body;
  EXPECT_EQ(ParseObject(submitted.body)->getValue<std::string>("status"), "committed");
  EXPECT_EQ(stack_->OrderCount("reg-1").value(), 1);
  HttpReply late =
      Call("POST", "/v1/transactions/reg-1/branches", stack_->OrderBranch("late", "A1", 1));
  EXPECT_EQ(late.status, 409) << "registration after submit";
  EXPECT_EQ(Call("POST", "/v1/transactions/reg-1/abort").status, 409) << "commit was decided";
  EXPECT_EQ(Call("POST", "/v1/transactions/reg-1/branches", "{").status, 400);
  EXPECT_EQ(Call("POST", "/v1/transactions/nope/submit").status, 404);
}

TEST_F(TwoPcApiTest, AbortBeforeSubmitAndListing) {
  ASSERT_EQ(Call("POST", "/v1/transactions", R"({"gid":"list-a","mode":"2pc"})").status, 201);
  ASSERT_EQ(
      Call("POST", "/v1/transactions/list-a/branches", stack_->OrderBranch("o", "A1", 1)).status,
      201);
  HttpReply aborted = Call("POST", "/v1/transactions/list-a/abort", R"({"wait":true})");
  EXPECT_EQ(aborted.status, 200);
  EXPECT_EQ(ParseObject(aborted.body)->getValue<std::string>("status"), "aborted");
  EXPECT_EQ(ParseObject(aborted.body)->getValue<std::string>("reason"), "aborted by the client");
  EXPECT_EQ(Call("POST", "/v1/transactions/list-a/submit").status, 409);
  EXPECT_EQ(Call("POST", "/v1/transactions/list-a/retry").status, 409) << "final: nothing to retry";

  auto page = ParseObject(Call("GET", "/v1/transactions?status=aborted&mode=2pc").body);
  auto list = page->getArray("transactions");
  bool found = false;
  for (size_t i = 0; i < list->size(); ++i) {
    EXPECT_EQ(list->getObject(i)->getValue<std::string>("status"), "aborted");
    found = found || list->getObject(i)->getValue<std::string>("gid") == "list-a";
  }
  EXPECT_TRUE(found);

  // Paging: limit 1 walks every transaction once, in gid order.
  std::vector<std::string> walked;
  std::string after;
  while (true) {
    auto p = ParseObject(
        Call("GET", "/v1/transactions?limit=1" + (after.empty() ? "" : "&after=" + after)).body);
    auto items = p->getArray("transactions");
    if (items->size() == 0) break;
    walked.push_back(items->getObject(0)->getValue<std::string>("gid"));
    if (p->get("next").isEmpty()) break;
    after = p->getValue<std::string>("next");
  }
  EXPECT_EQ(static_cast<int>(walked.size()), CountStored());
  EXPECT_TRUE(std::is_sorted(walked.begin(), walked.end()));
}

TEST_F(TwoPcApiTest, RetrySkipsTheBackoffOfAStuckTransaction) {
  auto fault = HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                        R"({"op":"commit","action":"fail"})");
  ASSERT_TRUE(fault.ok() && fault->status == 200);
  ASSERT_EQ(Call("POST", "/v1/transactions", Body("retry-1", 1)).status, 201);
  ASSERT_TRUE(WaitUntil([&] { return stack_->StatusOf("retry-1") == "committing"; },
                        std::chrono::seconds(30)));
  auto off = HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                      R"({"op":"commit","action":"off"})");
  ASSERT_TRUE(off.ok() && off->status == 200);
  HttpReply retried = Call("POST", "/v1/transactions/retry-1/retry");
  EXPECT_EQ(retried.status, 202) << retried.body;
  EXPECT_EQ(stack_->WaitFinal("retry-1", std::chrono::seconds(10)), "committed")
      << "the next attempt was 20s away: only the retry can have finished it";
  EXPECT_EQ(Call("POST", "/v1/transactions/nope/retry").status, 404);
}

TEST_F(TwoPcApiTest, MetricsCountWhatHappened) {
  ASSERT_EQ(
      Call("POST", "/v1/transactions", Body("metrics-ok", 1).insert(1, R"("wait":true,)")).status,
      200);
  ASSERT_EQ(Call("POST", "/v1/transactions", Body("metrics-no", 5000).insert(1, R"("wait":true,)"))
                .status,
            200);
  HttpReply m = Call("GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.content_type.rfind("text/plain", 0), 0u) << m.content_type;
  for (const char* line :
       {"treaty_transactions_finished_total{mode=\"2pc\",outcome=\"committed\"} 1\n",
        "treaty_transactions_finished_total{mode=\"2pc\",outcome=\"aborted\"} 1\n",
        "treaty_branch_calls_total{mode=\"2pc\",op=\"prepare\",outcome=\"refused\"} 1\n",
        "treaty_branch_call_seconds_count{mode=\"2pc\",op=\"commit\"} 2\n",
        "treaty_transactions_in_flight{status=\"committing\"} 0\n"}) {
    EXPECT_NE(m.body.find(line), std::string::npos) << line << "\nin:\n" << m.body;
  }
  EXPECT_NE(m.body.find("treaty_transactions_started_total{mode=\"2pc\"} 2"), std::string::npos);
  EXPECT_EQ(m.body.find("metrics-ok"), std::string::npos) << "a gid in the metrics";
  EXPECT_EQ(m.body.find("127.0.0.1"), std::string::npos) << "a URL in the metrics";
}

}  // namespace
}  // namespace treaty::harness
