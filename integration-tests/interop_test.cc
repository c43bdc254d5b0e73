// Participants in any language (#22): `treatyctl verify-participant` against the demo services
// (they pass) and against a participant that breaks one rule on purpose (it fails, naming the
// case); the Python participant on the SQL barrier, through a real treatyd.

#include <gtest/gtest.h>

#include <algorithm>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

// Runs treatyctl; returns {exit status, stdout and stderr}.
std::pair<int, std::string> Treatyctl(const TempDir& dir, std::vector<std::string> args) {
  static int runs = 0;
  args.insert(args.begin(), kTreatyctlPath);
  auto p = Process::Start(ProcessSpec{.name = "treatyctl",
                                      .argv = args,
                                      .log_path = dir.File("treatyctl-" + std::to_string(++runs))});
  if (!p.ok()) return {-1, p.status().message()};
  auto code = (*p)->Wait(std::chrono::seconds(120));
  return {code.ok() ? *code : -1, (*p)->ReadLog()};
}

std::vector<std::string> TccFlags(const std::string& base) {
  return {"--try",    base + "/tcc/try",   "--confirm", base + "/tcc/confirm",
          "--cancel", base + "/tcc/cancel"};
}

std::vector<std::string> Join(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TempDir MakeDir() {
  auto dir = TempDir::Create("interop");
  EXPECT_TRUE(dir.ok());
  return std::move(*dir);
}

TEST(VerifyParticipantTest, DemoServicesPass) {
  TempDir dir = MakeDir();
  auto stack = TreatyStack::Start();
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  ASSERT_OK((*stack)->SetStock("V1", 100));
  std::string inv = (*stack)->inventory().base_url();
  std::string orders = (*stack)->orders().base_url();
  std::vector<std::string> payload = {"--payload", R"({"sku":"V1","qty":1})", "--probe",
                                      inv + "/stock/V1"};
  struct Run {
    std::string what;
    std::vector<std::string> args;
    int cases;
  };
  for (const Run& run : {
           Run{"inventory tcc", Join(Join({"verify-participant"}, TccFlags(inv)), payload), 9},
           Run{"inventory saga",
               Join({"verify-participant", "--action", inv + "/saga/reserve", "--compensate",
                     inv + "/saga/release"},
                    payload),
               8},
           Run{"inventory 2pc",
               Join({"verify-participant", "--prepare", inv + "/2pc/prepare", "--commit",
                     inv + "/2pc/commit", "--abort", inv + "/2pc/abort"},
                    payload),
               10},
           // No probe: order-svc has no read of its totals; the answers alone are checked.
           Run{"orders tcc",
               Join(Join({"verify-participant"}, TccFlags(orders)),
                    {"--payload", R"({"sku":"V1","qty":1})"}),
               9},
       }) {
    auto [code, out] = Treatyctl(dir, run.args);
    EXPECT_EQ(code, 0) << run.what << ":\n" << out;
    EXPECT_NE(out.find("all " + std::to_string(run.cases) + " cases passed"), std::string::npos)
        << run.what << ":\n"
        << out;
    EXPECT_EQ(out.find("FAIL"), std::string::npos) << run.what << ":\n" << out;
  }
  // What the cases left: the stock moved only by the ops that were meant to stay (the repeated
  // try confirmed, 2PC's repeated and raced prepares committed, the saga's repeated action).
  // tcc: 1 sold; saga: 1 sold; 2pc: 1 + 3 sold; orders tcc: none of inventory's.
  EXPECT_EQ((*stack)->Stock("V1").value(), "94/0/6");
}

// A participant breaking each rule in turn: verify-participant exits 1 and names the case.
TEST(VerifyParticipantTest, NamesTheRuleAWrongParticipantBreaks) {
  TempDir dir = MakeDir();
  std::string script = std::string(kSourceDir) + "/integration-tests/tools/wrong_participant.py";
  struct Rule {
    std::string broken, mode, failing_case;
  };
  for (const Rule& rule : {
           Rule{"", "tcc", ""},
           Rule{"", "saga", ""},
           Rule{"repeat", "tcc", "repeated try"},
           Rule{"null-compensation", "tcc", "cancel before try (null compensation)"},
           Rule{"hanging", "tcc", "try after cancel (hanging)"},
           Rule{"hanging", "saga", "action after compensate (hanging)"},
           Rule{"unknown-op", "tcc", "unknown op"},
           Rule{"malformed", "tcc", "malformed body: not JSON"},
           Rule{"race", "tcc", "slow duplicate racing the original"},
       }) {
    auto svc = Service::Start(ServiceSpec{.name = "wrong-participant",
                                          .binary = script,
                                          .config_yaml = R"({"break": ")" + rule.broken + "\"}"});
    ASSERT_TRUE(svc.ok()) << svc.status().message();
    std::string base = (*svc)->base_url();
    std::vector<std::string> urls =
        rule.mode == "tcc" ? TccFlags(base)
                           : std::vector<std::string>{"--action", base + "/saga/action",
                                                      "--compensate", base + "/saga/compensate"};
    auto [code, out] = Treatyctl(
        dir, Join(Join({"verify-participant", "--probe", base + "/probe", "--timeout", "5s"}, urls),
                  {"--payload", R"({"qty":1})"}));
    std::string what = rule.mode + " participant breaking '" + rule.broken + "'";
    if (rule.broken.empty()) {
      EXPECT_EQ(code, 0) << what << ":\n" << out;
      continue;
    }
    EXPECT_EQ(code, 1) << what << ":\n" << out;
    EXPECT_NE(out.find("FAIL    " + rule.failing_case), std::string::npos) << what << ":\n" << out;
    EXPECT_NE(out.find("cases FAILED: "), std::string::npos) << what << ":\n" << out;
  }
}

TEST(VerifyParticipantTest, BadFlagsAreNamed) {
  TempDir dir = MakeDir();
  auto [code, out] = Treatyctl(dir, {"verify-participant", "--try", "http://127.0.0.1:1/t"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("--confirm is required"), std::string::npos) << out;
  std::tie(code, out) = Treatyctl(dir, {"verify-participant", "--try", "http://a/t", "--action",
                                        "http://a/a", "--compensate", "http://a/c"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("one mode at a time"), std::string::npos) << out;
  std::tie(code, out) = Treatyctl(dir, {"verify-participant", "--action", "http://a/a",
                                        "--compensate", "http://a/c", "--payload", "{nope"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("--payload is not JSON"), std::string::npos) << out;
  std::tie(code, out) = Treatyctl(dir, {"verify-participant", "--action", "http://a/a",
                                        "--compensate", "http://a/c", "--gid-prefix", "a\"b"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("--gid-prefix must be"), std::string::npos) << out;
  std::tie(code, out) = Treatyctl(dir, {"barrier", "install"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("needs --url postgresql://"), std::string::npos) << out;
}

// The Python participant (participants/python): TCC and sagas through treatyd, committed and
// aborted, on its own database with the SQL barrier; and it passes verify-participant.
class PythonParticipantTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = TreatyStack::Start();
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
    ASSERT_OK(stack_->pg().CreateDatabase("pyinv"));
  }

  Result<std::unique_ptr<Service>> StartPython() {
    return Service::Start(ServiceSpec{
        .name = "python-inventory",
        .binary = std::string(kSourceDir) + "/participants/python/inventory_participant.py",
        .config_yaml =
            R"({"listen": "127.0.0.1:0", "database": ")" + stack_->pg().Url("pyinv") + "\"}",
    });
  }

  std::string Stock(const std::string& sku) {
    return stack_->pg()
        .QueryValue("pyinv",
                    "SELECT available || '/' || reserved || '/' || sold FROM stock "
                    "WHERE sku = '" +
                        sku + "'")
        .value();
  }
  // The barrier's rows of a branch: "op:written_by,..." by op.
  std::string BarrierRows(const std::string& gid, const std::string& branch) {
    return stack_->pg()
        .QueryValue("pyinv",
                    "SELECT coalesce(string_agg(op || ':' || written_by, ',' ORDER BY op), '') "
                    "FROM treaty_barrier WHERE gid = '" +
                        gid + "' AND branch_id = '" + branch + "'")
        .value();
  }

  // Starts a transaction with wait; returns its final status.
  std::string Transact(const std::string& gid, const std::string& body) {
    auto r = HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions", body);
    EXPECT_TRUE(r.ok() && (r->status == 200 || r->status == 201)) << (r.ok() ? r->body : "");
    return stack_->WaitFinal(gid);
  }

  TempDir dir_ = MakeDir();
  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(PythonParticipantTest, TccAndSagasThroughTreatydAndVerifyParticipant) {
  // Without the barrier the participant refuses to start, and says what to run.
  auto early = StartPython();
  ASSERT_FALSE(early.ok());
  EXPECT_NE(early.status().message().find("treatyctl barrier install"), std::string::npos)
      << early.status().message();
  for (int i = 0; i < 2; ++i) {  // the install is idempotent
    auto [code, out] = Treatyctl(dir_, {"barrier", "install", "--url", stack_->pg().Url("pyinv")});
    ASSERT_EQ(code, 0) << out;
    EXPECT_NE(out.find("barrier installed: treaty.barrier_enter(gid, branch_id, op), version 1"),
              std::string::npos)
        << out;
  }
  auto svc = StartPython();
  ASSERT_TRUE(svc.ok()) << svc.status().message();
  std::string py = (*svc)->base_url();
  auto set = HttpCall("POST", py + "/admin/stock", R"({"sku":"P1","available":10})");
  ASSERT_TRUE(set.ok() && set->status == 200) << (set.ok() ? set->body : "");
  auto py_tcc = [&](const std::string& id, int qty) {
    return R"({"id":")" + id + R"(","try":")" + py + R"(/tcc/try","confirm":")" + py +
           R"(/tcc/confirm","cancel":")" + py + R"(/tcc/cancel","payload":{"sku":"P1","qty":)" +
           std::to_string(qty) + "}}";
  };
  auto py_saga = [&](const std::string& id, int qty) {
    return R"({"id":")" + id + R"(","action":")" + py + R"(/saga/reserve","compensate":")" + py +
           R"(/saga/release","payload":{"sku":"P1","qty":)" + std::to_string(qty) + "}}";
  };

  // TCC, committed: the Python branch beside order-svc's.
  EXPECT_EQ(Transact("py-tcc-1", R"({"gid":"py-tcc-1","mode":"tcc","wait":true,"branches":[)" +
                                     py_tcc("stock", 2) + "," +
                                     stack_->OrderTccBranch("order", "P1", 2) + "]}"),
            "committed");
  EXPECT_EQ(Stock("P1"), "8/0/2");
  EXPECT_EQ(BarrierRows("py-tcc-1", "stock"), "confirm:confirm,try:try");

  // TCC, aborted: the Python try runs first, then inventory-svc refuses (unknown SKU), and the
  // Python branch is cancelled: its frozen stock released.
  EXPECT_EQ(
      Transact("py-tcc-2",
               R"({"gid":"py-tcc-2","mode":"tcc","sequential":true,"wait":true,"branches":[)" +
                   py_tcc("stock", 3) + "," +
                   stack_->InventoryTccBranch("other", "NO-SUCH-SKU", 1) + "]}"),
      "aborted");
  EXPECT_EQ(Stock("P1"), "8/0/2");
  EXPECT_EQ(BarrierRows("py-tcc-2", "stock"), "cancel:cancel,try:try")
      << "the try ran and its cancel undid it";

  // Saga, committed.
  EXPECT_EQ(Transact("py-saga-1", R"({"gid":"py-saga-1","mode":"saga","wait":true,"branches":[)" +
                                      py_saga("a", 1) + "]}"),
            "committed");
  EXPECT_EQ(Stock("P1"), "7/0/3");

  // Saga, aborted: the Python step ran, the step after it is refused, the Python step is
  // compensated.
  std::string inv = stack_->inventory().base_url();
  EXPECT_EQ(
      Transact("py-saga-2", R"({"gid":"py-saga-2","mode":"saga","wait":true,"branches":[)" +
                                py_saga("a", 2) + R"(,{"id":"b","after":["a"],"action":")" + inv +
                                R"(/saga/reserve","compensate":")" + inv +
                                R"(/saga/release","payload":{"sku":"NO-SUCH-SKU","qty":1}}]})"),
      "aborted");
  EXPECT_EQ(Stock("P1"), "7/0/3");
  EXPECT_EQ(BarrierRows("py-saga-2", "a"), "action:action,compensate:compensate");

  // And the protocol's hard cases, TCC and saga.
  std::vector<std::string> common = {"--payload", R"({"sku":"P1","qty":1})", "--probe",
                                     py + "/stock/P1"};
  auto [code, out] = Treatyctl(dir_, Join(Join({"verify-participant"}, TccFlags(py)), common));
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("all 9 cases passed"), std::string::npos) << out;
  std::tie(code, out) =
      Treatyctl(dir_, Join({"verify-participant", "--action", py + "/saga/reserve", "--compensate",
                            py + "/saga/release"},
                           common));
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("all 8 cases passed"), std::string::npos) << out;

  // Its database away: "not known yet" (503), and the op done once it is back (the pool drops
  // the connections the restart broke).
  std::string body = TreatyStack::OpBody("py-down", "stock", "try", "tcc", "P1", 1);
  ASSERT_OK(stack_->pg().Stop());
  auto down = HttpCall("POST", py + "/tcc/try", body);
  ASSERT_TRUE(down.ok());
  EXPECT_EQ(down->status, 503) << down->body;
  ASSERT_OK(stack_->pg().Restart());
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto r = HttpCall("POST", py + "/tcc/try", body);
        return r.ok() && r->status == 200;
      },
      std::chrono::seconds(60), std::chrono::milliseconds(200)));
  EXPECT_EQ(BarrierRows("py-down", "stock"), "try:try");
}

}  // namespace
}  // namespace treaty::harness
