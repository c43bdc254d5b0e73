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

#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

#define ASSERT_OK(expr)                                    \
  do {                                                     \
    const auto& _s = (expr);                               \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.message(); \
  } while (0)

Poco::JSON::Object::Ptr ParseObject(const std::string& body) {
  Poco::JSON::Parser parser;
  return parser.parse(body).extract<Poco::JSON::Object::Ptr>();
}

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
            "branch stock refused prepare: HTTP 409: {\"error\":{\"code\":\"refused\",\"message\":"
            "\"out of stock: sku A1 has 10, asked 11\"}}");
  EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0");
  EXPECT_EQ(stack_->OrderCount().value(), 0);
  ExpectNothingPrepared();
}

}  // namespace
}  // namespace treaty::harness
