// TCC end to end: treatyd, order-svc and inventory-svc as real processes on a real PostgreSQL.
// Checked where a user would look: stock (available / frozen / sold), order rows and their
// status, and the transaction's final state.

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

class TccTest : public ::testing::Test {
 protected:
  void SetUp() override { Boot({}); }

  void Boot(StackOptions options) {
    stack_.reset();
    auto s = TreatyStack::Start(std::move(options));
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
    ASSERT_OK(stack_->SetStock("A1", 10));
  }

  Result<HttpReply> Order(const std::string& gid, int qty, bool wait,
                          const std::string& sku = "A1") {
    std::string body = R"({"gid":")" + gid + R"(","mode":"tcc","timeout":"20s","wait":)" +
                       (wait ? "true" : "false") + R"(,"branches":[)" +
                       stack_->OrderTccBranch("order", sku, qty) + "," +
                       stack_->InventoryTccBranch("stock", sku, qty) + "]}";
    return HttpCall("POST", stack_->treatyd().base_url() + "/v1/transactions", body,
                    std::chrono::seconds(60));
  }

  // Calls a participant's TCC op directly, as a late or repeated delivery would arrive.
  int Deliver(Service& svc, const std::string& gid, const std::string& branch,
              const std::string& op, int qty, const std::string& sku = "A1") {
    auto r = HttpCall("POST", TreatyStack::Url(svc, "/tcc/" + op),
                      TreatyStack::OpBody(gid, branch, op, "tcc", sku, qty));
    return r.ok() ? r->status : -1;
  }

  std::string OrderStatus(const std::string& gid) {
    return stack_->pg()
        .QueryValue("orders",
                    "SELECT string_agg(status, ',') FROM orders WHERE gid = '" + gid + "'")
        .value();
  }

  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(TccTest, CommitFreezesThenSells) {
  auto r = Order("tcc-1", 3, true);
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  EXPECT_EQ(ParseObject(r->body)->getValue<std::string>("status"), "committed");
  EXPECT_EQ(stack_->Stock("A1").value(), "7/0/3") << "available/frozen/sold";
  EXPECT_EQ(OrderStatus("tcc-1"), "placed");
}

TEST_F(TccTest, OutOfStockCancelsAndChangesNothing) {
  auto r = Order("tcc-2", 11, true);
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  auto body = ParseObject(r->body);
  EXPECT_EQ(body->getValue<std::string>("status"), "aborted");
  EXPECT_EQ(body->getValue<std::string>("reason"),
            "branch stock refused try: HTTP 409: out of stock: sku A1 has 10, asked 11");
  EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0");
  EXPECT_EQ(OrderStatus("tcc-2"), "cancelled") << "the order's try ran; its cancel undid it";
}

TEST_F(TccTest, NullCompensationChangesNothing) {
  EXPECT_EQ(Deliver(stack_->inventory(), "ghost", "stock", "cancel", 4), 200);
  EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0") << "a cancel without a try released stock";
  EXPECT_EQ(Deliver(stack_->orders(), "ghost", "order", "cancel", 4), 200);
  EXPECT_EQ(stack_->OrderCount("ghost").value(), 0);
}

TEST_F(TccTest, ATryAfterItsCancelIsRefusedAndFreezesNothing) {
  EXPECT_EQ(Deliver(stack_->inventory(), "late", "stock", "cancel", 4), 200);
  EXPECT_EQ(Deliver(stack_->inventory(), "late", "stock", "try", 4), 409);
  EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0") << "frozen stock must stay zero";
  EXPECT_EQ(Deliver(stack_->orders(), "late", "order", "cancel", 4), 200);
  EXPECT_EQ(Deliver(stack_->orders(), "late", "order", "try", 4), 409);
  EXPECT_EQ(stack_->OrderCount("late").value(), 0);
}

TEST_F(TccTest, DuplicateConfirmAndCancelDeliveriesApplyOnce) {
  ASSERT_EQ(Deliver(stack_->inventory(), "dup-c", "stock", "try", 2), 200);
  ASSERT_EQ(Deliver(stack_->inventory(), "dup-c", "stock", "try", 2), 200);
  EXPECT_EQ(stack_->Stock("A1").value(), "8/2/0");
  EXPECT_EQ(Deliver(stack_->inventory(), "dup-c", "stock", "confirm", 2), 200);
  EXPECT_EQ(Deliver(stack_->inventory(), "dup-c", "stock", "confirm", 2), 200);
  EXPECT_EQ(stack_->Stock("A1").value(), "8/0/2");

  ASSERT_EQ(Deliver(stack_->inventory(), "dup-x", "stock", "try", 3), 200);
  EXPECT_EQ(Deliver(stack_->inventory(), "dup-x", "stock", "cancel", 3), 200);
  EXPECT_EQ(Deliver(stack_->inventory(), "dup-x", "stock", "cancel", 3), 200);
  EXPECT_EQ(stack_->Stock("A1").value(), "8/0/2");
}

TEST_F(TccTest, ClientDrivenTriesThenSubmitOrAbort) {
  std::string base = stack_->treatyd().base_url();
  for (const std::string outcome : {"submit", "abort"}) {
    std::string gid = "client-" + outcome;
    ASSERT_EQ(HttpCall("POST", base + "/v1/transactions",
                       R"({"gid":")" + gid + R"(","mode":"tcc","timeout":"30s"})")
                  ->status,
              201);
    // The client registers each branch's confirm and cancel, then runs its own tries.
    for (const std::string& branch : {stack_->OrderTccBranch("order", "A1", 1, false),
                                      stack_->InventoryTccBranch("stock", "A1", 1, false)}) {
      auto reg = HttpCall("POST", base + "/v1/transactions/" + gid + "/branches", branch);
      ASSERT_TRUE(reg.ok() && reg->status == 201) << (reg.ok() ? reg->body : "");
    }
    ASSERT_EQ(Deliver(stack_->orders(), gid, "order", "try", 1), 200);
    ASSERT_EQ(Deliver(stack_->inventory(), gid, "stock", "try", 1), 200);
    auto done =
        HttpCall("POST", base + "/v1/transactions/" + gid + "/" + outcome, R"({"wait":true})");
    ASSERT_TRUE(done.ok() && done->status == 200) << (done.ok() ? done->body : "");
    EXPECT_EQ(ParseObject(done->body)->getValue<std::string>("status"),
              outcome == "submit" ? "committed" : "aborted");
    EXPECT_EQ(OrderStatus(gid), outcome == "submit" ? "placed" : "cancelled");
    auto late = HttpCall("POST", base + "/v1/transactions/" + gid + "/branches",
                         stack_->OrderTccBranch("late", "A1", 1, false));
    EXPECT_EQ(late->status, 409) << "registration after " << outcome;
  }
  EXPECT_EQ(stack_->Stock("A1").value(), "9/0/1");
}

TEST_F(TccTest, AClientThatDiesAfterItsTryHasItCancelledAtTheDeadline) {
  // Registered first, then tried, then the client is gone: its try must not stay applied.
  std::string base = stack_->treatyd().base_url();
  ASSERT_EQ(HttpCall("POST", base + "/v1/transactions",
                     R"({"gid":"orphan-try","mode":"tcc","timeout":"1s"})")
                ->status,
            201);
  auto reg = HttpCall("POST", base + "/v1/transactions/orphan-try/branches",
                      stack_->InventoryTccBranch("stock", "A1", 3, false));
  ASSERT_TRUE(reg.ok() && reg->status == 201) << (reg.ok() ? reg->body : "");
  ASSERT_EQ(Deliver(stack_->inventory(), "orphan-try", "stock", "try", 3), 200);
  EXPECT_EQ(stack_->Stock("A1").value(), "7/3/0") << "the try froze the stock";
  EXPECT_EQ(stack_->WaitFinal("orphan-try", std::chrono::seconds(30)), "aborted");
  EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0") << "the orphaned try was not cancelled";
}

TEST_F(TccTest, AConfirmThatKeepsFailingFinishesOnceTheParticipantRecovers) {
  auto fault = HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                        R"({"op":"confirm","action":"fail"})");
  ASSERT_TRUE(fault.ok() && fault->status == 200);
  ASSERT_EQ(Order("tcc-f", 2, false)->status, 201);
  ASSERT_TRUE(WaitUntil([&] { return stack_->StatusOf("tcc-f") == "committing"; },
                        std::chrono::seconds(30)));
  EXPECT_EQ(stack_->Stock("A1").value(), "8/2/0") << "frozen until confirmed";
  HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
           R"({"op":"confirm","action":"off"})");
  EXPECT_EQ(stack_->WaitFinal("tcc-f"), "committed");
  EXPECT_EQ(stack_->Stock("A1").value(), "8/0/2");
}

class TccCrashTest : public TccTest, public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override { Boot(StackOptions{.treatyd_env = {{"TREATY_CRASH_POINT", GetParam()}}}); }
};

TEST_P(TccCrashTest, RecoveryFinishesTheTransactionConsistently) {
  // after_cancel needs the cancel path: ask for more than there is.
  std::string point = GetParam();
  int qty = point == "after_cancel" ? 11 : 4;
  Order("crash-1", qty, /*wait=*/true);  // the answer may be lost with the process
  auto exit_status = stack_->treatyd().process().Wait(std::chrono::seconds(30));
  ASSERT_TRUE(exit_status.ok()) << "treatyd did not crash at " << point;
  ASSERT_OK(stack_->RestartTreatyd(/*env=*/{}));
  std::string outcome = stack_->WaitFinal("crash-1");
  ASSERT_FALSE(outcome.empty()) << "not finished after the restart";
  if (outcome == "committed") {
    EXPECT_EQ(stack_->Stock("A1").value(), "6/0/4");
    EXPECT_EQ(OrderStatus("crash-1"), "placed");
  } else {
    EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0");
    std::string order = OrderStatus("crash-1");
    EXPECT_TRUE(order == "cancelled" || order.empty()) << order;
  }
  if (point == "after_decision" || point == "after_confirm") {
    EXPECT_EQ(outcome, "committed");
  }
  if (point == "after_cancel") {
    EXPECT_EQ(outcome, "aborted");
  }
}

INSTANTIATE_TEST_SUITE_P(EachCrashPoint, TccCrashTest,
                         ::testing::Values("after_begin", "after_try", "after_decision",
                                           "after_confirm", "after_cancel"),
                         [](const auto& info) { return std::string(info.param); });

TEST_F(TccTest, TwoHundredConcurrentTransactionsWithRandomFailures) {
  const std::map<std::string, int> initial = {{"S1", 40}, {"S2", 40}, {"S3", 40}, {"S4", 40}};
  for (const auto& [sku, n] : initial) ASSERT_OK(stack_->SetStock(sku, n));
  // Random failures on top of running out of stock: inventory answers 503 to some confirms and
  // cancels for a while, so phase two has to retry.
  ASSERT_TRUE(HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                       R"({"op":"cancel","action":"fail"})")
                  .ok());
  constexpr int kTransactions = 200;
  std::atomic<int> next{0}, committed{0}, aborted{0}, failed{0}, accepted{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 16; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 rng(99 + c);
      for (int i = next++; i < kTransactions; i = next++) {
        std::string sku = "S" + std::to_string(1 + rng() % 4);
        int qty = 1 + static_cast<int>(rng() % 3);
        auto r = Order("load-" + std::to_string(i), qty, false, sku);
        if (r.ok() && r->status == 201) ++accepted;
      }
    });
  }
  for (auto& t : clients) t.join();
  ASSERT_EQ(accepted, kTransactions);
  ASSERT_TRUE(HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                       R"({"op":"cancel","action":"off"})")
                  .ok());
  for (int i = 0; i < kTransactions; ++i) {
    std::string outcome = stack_->WaitFinal("load-" + std::to_string(i));
    if (outcome == "committed") {
      ++committed;
    } else if (outcome == "aborted") {
      ++aborted;
    } else {
      ++failed;
    }
  }
  EXPECT_EQ(failed, 0);
  EXPECT_GT(aborted, 0);
  EXPECT_GT(committed, 0);
  for (const auto& [sku, n] : initial) {
    auto row = stack_->pg().QueryValue(
        "inventory",
        "SELECT available || ',' || reserved || ',' || sold FROM stock WHERE sku = '" + sku + "'");
    int available = 0, reserved = 0, sold = 0;
    ASSERT_EQ(std::sscanf(row->c_str(), "%d,%d,%d", &available, &reserved, &sold), 3);
    EXPECT_EQ(reserved, 0) << sku << ": stock left frozen";
    EXPECT_EQ(available + sold, n) << sku;
  }
  EXPECT_EQ(stack_->pg()
                .QueryValue("orders", "SELECT count(*) FROM orders WHERE status = 'placed'")
                .value(),
            std::to_string(committed.load()));
  EXPECT_EQ(stack_->pg()
                .QueryValue("orders", "SELECT count(*) FROM orders WHERE status = 'pending'")
                .value(),
            "0");
}

}  // namespace
}  // namespace treaty::harness
