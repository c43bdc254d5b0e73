// Failover of treatyd's store (#24): treatyd on a pg_auto_failover formation's multi-host URL
// (target_session_attrs=read-write), a monitor, a primary and a synchronous secondary, all real
// processes. Clients run 2PC transactions and place-order sagas and record every decision treatyd
// answered; then the primary's node is killed (keeper and postmaster, SIGKILL) or switched over.
// Afterwards every decision answered to a client is what treatyd's store and the participants'
// databases show, every transaction treatyd knows is final, and nothing is left prepared. The
// time without service (the longest gap between two answered decisions) is printed and recorded
// as a test property; docs/deployment.md quotes it.

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/pg_auto_failover.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

struct Attempt {
  bool saga = false;
  std::string answered;  // "committed" / "aborted" as answered to the client; "" if none
};

class FailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = PgAutoFailover::Start("treaty");
    ASSERT_TRUE(f.ok()) << f.status().message();
    formation_ = std::move(*f);
    ASSERT_EQ(formation_->Primary(), 0);
    auto s = TreatyStack::Start(
        StackOptions{.saga_files = {PlaceOrderSagaFile()}, .store_url = formation_->Url("treaty")});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
    ASSERT_OK(stack_->SetStock("A1", 100000));
    ASSERT_OK(stack_->SetStock("B1", 100000));
  }

  void TearDown() override {
    stack_.reset();
    formation_.reset();
  }

  // One client: 2PC transactions and sagas one after another until `stop_`, each answered
  // decision recorded with the time it was answered.
  void Client(int id) {
    for (int n = 0; !stop_; ++n) {
      const bool saga = n % 2 == 1;
      const std::string gid = "c" + std::to_string(id) + "-" + std::to_string(n);
      {
        std::lock_guard<std::mutex> lock(mu_);
        attempts_[gid] = Attempt{.saga = saga};
      }
      Result<HttpReply> r = Status::Internal("not sent");
      if (saga) {
        r = HttpCall(
            "POST", stack_->treatyd().base_url() + "/v1/sagas/place-order",
            R"({"gid":")" + gid + R"(","wait":true,"input":{"sku":"B1","qty":1,"card":"4242"}})",
            std::chrono::seconds(60));
      } else {
        r = HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions",
                     R"({"gid":")" + gid + R"(","mode":"2pc","timeout":"20s","wait":true,)" +
                         R"("branches":[)" + stack_->OrderBranch("order", "A1", 1) + "," +
                         stack_->InventoryBranch("stock", "A1", 1) + "]}",
                     std::chrono::seconds(60));
      }
      std::string status;
      if (r.ok() && r->status == 200)
        status = ParseObject(r->body)->getValue<std::string>("status");
      std::lock_guard<std::mutex> lock(mu_);
      if (status == "committed" || status == "aborted") {
        attempts_[gid].answered = status;
        answers_.push_back(std::chrono::steady_clock::now());
      } else {
        ++refused_;
      }
    }
  }

  size_t Answers() {
    std::lock_guard<std::mutex> lock(mu_);
    return answers_.size();
  }

  // Runs the clients, calls `fault` once some decisions were answered, then waits for `after`
  // more answers; returns the longest gap between two answers (the time without service).
  Duration RunAround(const std::function<void()>& fault, size_t after = 40) {
    std::vector<std::thread> clients;
    for (int i = 0; i < 4; ++i) clients.emplace_back([this, i] { Client(i); });
    EXPECT_TRUE(WaitUntil([&] { return Answers() >= 40; }, std::chrono::seconds(120)));
    const size_t before = Answers();
    fault();
    EXPECT_TRUE(WaitUntil([&] { return Answers() >= before + after; }, std::chrono::seconds(180)))
        << "treatyd did not answer again after the failover";
    stop_ = true;
    for (auto& t : clients) t.join();
    Duration longest{0};
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 1; i < answers_.size(); ++i) {
      longest =
          std::max(longest, std::chrono::duration_cast<Duration>(answers_[i] - answers_[i - 1]));
    }
    return longest;
  }

  // Every answered decision is what the store and the participants show; every transaction the
  // store knows is final and consistent with the participants; nothing left prepared.
  void ExpectConsistent() {
    int committed_2pc = 0, answered = 0;
    for (const auto& [gid, a] : attempts_) {
      std::string final_status = stack_->StatusOf(gid).empty() ? "" : stack_->WaitFinal(gid);
      if (!a.answered.empty()) {
        ++answered;
        EXPECT_EQ(final_status, a.answered) << gid << ": answered " << a.answered;
      }
      if (!a.answered.empty() || !final_status.empty()) {
        EXPECT_TRUE(final_status == "committed" || final_status == "aborted")
            << gid << " is " << final_status;
      }
      const bool committed = final_status == "committed";
      if (a.saga) {
        EXPECT_EQ(stack_->pg()
                      .QueryValue("orders", "SELECT count(*) FROM orders WHERE gid = '" + gid +
                                                "' AND status = 'placed'")
                      .value(),
                  committed ? "1" : "0")
            << gid << " is " << final_status;
      } else {
        EXPECT_EQ(stack_->OrderCount(gid).value(), committed ? 1 : 0)
            << gid << " is " << final_status;
        if (committed) ++committed_2pc;
      }
    }
    EXPECT_GE(answered, 80);
    // Inventory's side of the committed 2PC transactions: sold, nothing held.
    EXPECT_EQ(stack_->Stock("A1").value(),
              std::to_string(100000 - committed_2pc) + "/0/" + std::to_string(committed_2pc));
    EXPECT_EQ(stack_->PreparedCount("orders").value(), 0);
    EXPECT_EQ(stack_->PreparedCount("inventory").value(), 0);
  }

  void Report(const std::string& what, Duration outage) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(outage).count();
    std::printf(
        "%s: longest time without an answered decision %lld ms (%zu answered, %d refused)\n",
        what.c_str(), static_cast<long long>(ms), answers_.size(), refused_);
    RecordProperty("outage_ms", static_cast<int>(ms));
  }

  std::unique_ptr<PgAutoFailover> formation_;
  std::unique_ptr<TreatyStack> stack_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::map<std::string, Attempt> attempts_;
  std::vector<std::chrono::steady_clock::time_point> answers_;
  int refused_ = 0;
};

TEST_F(FailoverTest, PrimaryKilledUnderLoadLosesNoAnsweredDecision) {
  Duration outage = RunAround([&] {
    ASSERT_OK(formation_->KillNode(0));
    ASSERT_OK(formation_->WaitPrimary(1, std::chrono::seconds(120)));
  });
  ASSERT_EQ(formation_->Writable("treaty"), 1);
  ExpectConsistent();
  Report("primary killed", outage);
}

TEST_F(FailoverTest, PlannedSwitchoverUnderLoadLosesNoAnsweredDecision) {
  Duration outage = RunAround([&] {
    ASSERT_OK(formation_->Switchover());
    ASSERT_OK(formation_->WaitPrimary(1, std::chrono::seconds(120)));
  });
  ExpectConsistent();
  Report("switchover", outage);
}

}  // namespace
}  // namespace treaty::harness
