// treatyctl as an operator runs it, against a real treatyd with transactions in it.

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

class TreatyctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("treatyctl");
    ASSERT_TRUE(dir.ok());
    dir_ = std::move(*dir);
    auto s = TreatyStack::Start(StackOptions{.saga_files = {PlaceOrderSagaFile()}});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
    ASSERT_OK(stack_->SetStock("A1", 5));
  }

  // Runs treatyctl; returns {exit status, stdout and stderr}.
  std::pair<int, std::string> Run(std::vector<std::string> args) {
    if (std::find(args.begin(), args.end(), "--url") == args.end()) {
      args.insert(args.begin(), {"--url", stack_->treatyd().base_url()});
    }
    args.insert(args.begin(), kTreatyctlPath);
    auto p = Process::Start(ProcessSpec{.name = "treatyctl",
                                        .argv = args,
                                        .log_path = dir_.File("out-" + std::to_string(++runs_))});
    if (!p.ok()) return {-1, p.status().message()};
    auto code = (*p)->Wait(std::chrono::seconds(60));
    return {code.ok() ? *code : -1, (*p)->ReadLog()};
  }

  TempDir dir_;
  int runs_ = 0;
  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(TreatyctlTest, ShowsListsStartsAndRefuses) {
  std::string body = R"({"gid":"ctl-1","mode":"2pc","wait":true,"branches":[)" +
                     stack_->OrderBranch("order", "A1", 9) + "," +
                     stack_->InventoryBranch("stock", "A1", 9) + "]}";
  ASSERT_EQ(HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions", body)->status, 200);

  auto [code, out] = Run({"status", "ctl-1"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("ctl-1  2pc  aborted"), std::string::npos) << out;
  EXPECT_NE(out.find("reason:     branch stock refused prepare: HTTP 409: out of stock"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("active -> aborting"), std::string::npos) << out;

  std::tie(code, out) = Run({"list", "--status", "aborted"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("ctl-1"), std::string::npos) << out;
  std::tie(code, out) = Run({"list", "--since", "10m"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("ctl-1"), std::string::npos) << "begun within the last 10 minutes: " << out;
  std::tie(code, out) = Run({"list", "--older-than", "10m"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out.find("ctl-1"), std::string::npos) << "not older than 10 minutes: " << out;
  std::tie(code, out) = Run({"list", "--since", "yesterday"});
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("since"), std::string::npos) << "the error names the parameter: " << out;
  std::tie(code, out) = Run({"stats"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("aborted     1"), std::string::npos) << out;

  std::tie(code, out) = Run({"start-saga", "place-order", "--gid", "ctl-saga", "--input",
                             R"({"sku":"A1","qty":1,"card":"4242"})"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("ctl-saga  committed"), std::string::npos) << out;
  EXPECT_EQ(stack_->Stock("A1").value(), "4/0/1");
  // The step outputs later steps could name.
  std::tie(code, out) = Run({"status", "ctl-saga"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("\noutputs\n"), std::string::npos) << out;
  EXPECT_NE(out.find(R"(  create-order         {"order_id":)"), std::string::npos) << out;

  std::tie(code, out) = Run({"sagas"});
  EXPECT_NE(out.find("place-order@"), std::string::npos) << out;

  std::tie(code, out) = Run({"retry", "ctl-1"});
  EXPECT_EQ(code, 1) << "a final transaction has nothing to retry";
  EXPECT_NE(out.find("409: transaction ctl-1 is aborted: nothing to retry"), std::string::npos)
      << out;
  std::tie(code, out) = Run({"status", "nope"});
  EXPECT_EQ(code, 1);
  std::tie(code, out) = Run({"frobnicate"});
  EXPECT_EQ(code, 2);
  // A treatyd that is not there: a clear error, exit 1.
  std::tie(code, out) = Run({"--url", "http://127.0.0.1:1", "status", "ctl-1"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("cannot reach treatyd at http://127.0.0.1:1"), std::string::npos) << out;
}

TEST_F(TreatyctlTest, CheckConfigNamesTheProblem) {
  std::ofstream(dir_.File("treaty.yaml")) << "listen: 127.0.0.1:8420\nretry: { jitter: 7 }\n";
  auto [code, out] = Run({"check-config", dir_.File("treaty.yaml")});
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find(dir_.File("treaty.yaml") + ":2: retry.jitter: \"7\" is out of range"),
            std::string::npos)
      << out;
  std::ofstream(dir_.File("good.yaml")) << "listen: 127.0.0.1:8420\n";
  std::tie(code, out) = Run({"check-config", dir_.File("good.yaml")});
  EXPECT_EQ(code, 0) << out;
}

}  // namespace
}  // namespace treaty::harness
