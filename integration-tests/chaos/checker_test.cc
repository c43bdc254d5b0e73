// The checker finds each kind of violation in a history and observations built by hand, and
// none in a consistent one: what makes a clean chaos run mean something.

#include "integration-tests/chaos/checker.h"

#include <gtest/gtest.h>

namespace treaty::chaos {
namespace {

HistoryEvent Invoke(const std::string& gid, const std::string& mode, const std::string& sku,
                    int64_t qty) {
  return HistoryEvent{.type = "invoke", .gid = gid, .mode = mode, .sku = sku, .qty = qty};
}

HistoryEvent Answer(const std::string& gid, const std::string& action, int http,
                    const std::string& status) {
  return HistoryEvent{
      .type = "answer", .gid = gid, .action = action, .http = http, .status = status};
}

// A run that kept every promise: a committed 2PC (2 of H1), an aborted saga (1 of C00000, its
// order cancelled), a committed msg order (1 of H1) and an aborted TCC.
struct Consistent : ::testing::Test {
  std::vector<HistoryEvent> history = {
      Invoke("g1", "2pc", "H1", 2),
      Answer("g1", "begin", 200, "committed"),
      Invoke("g2", "saga", "C00000", 1),
      Answer("g2", "begin", 200, "aborted"),
      Invoke("g3", "msg", "H1", 1),
      Answer("g3", "msg", 200, "committed"),
      Invoke("g4", "tcc", "H1", 1),
      Answer("g4", "begin", 201, "prepared"),
      HistoryEvent{.type = "fault", .fault = "pause", .target = "treatyd-0"},
  };
  Observations seen;

  void SetUp() override {
    seen.final_status = {
        {"g1", "committed"}, {"g2", "aborted"}, {"g3", "committed"}, {"g4", "aborted"}};
    seen.initial_available = {{"H1", 10}, {"C00000", 2}};
    seen.stock = {{"H1", {8, 0, 2}}, {"C00000", {2, 0, 0}}};
    seen.orders = {{"g1", "order", "placed"},
                   {"g2", "create-order", "cancelled"},
                   {"g3", "order", "placed"},
                   {"g4", "order", "cancelled"}};
    seen.payments = {};
    seen.prepared = {{"orders", 0}, {"inventory", 0}};
    seen.outbox = {
        {1, "g1:order:OrderPlaced", "order:g1:order", "OrderPlaced", "sent"},
        {2, "g2:create-order:OrderPlaced", "order:g2:create-order", "OrderPlaced", "sent"},
        {3, "g2:create-order:OrderCancelled", "order:g2:create-order", "OrderCancelled", "sent"}};
    seen.topic = {
        {"g1:order", "g1:order:OrderPlaced", "", "OrderPlaced", "H1", 2},
        {"g2:create-order", "g2:create-order:OrderPlaced", "", "OrderPlaced", "C00000", 1},
        {"g1:order", "g1:order:OrderPlaced", "", "OrderPlaced", "H1", 2},  // a duplicate
        {"g3:order", "msg-g3", "msg-g3", "OrderPlaced", "H1", 1},
        {"g2:create-order", "g2:create-order:OrderCancelled", "", "OrderCancelled", "C00000", 1},
    };
    seen.inbox = {"g1:order:OrderPlaced", "g2:create-order:OrderPlaced",
                  "g2:create-order:OrderCancelled", "msg-g3"};
    seen.sales = {{"H1", {3, 0}}, {"C00000", {1, 1}}};
  }

  // Whether the checker reports `invariant` about `subject`.
  bool Finds(int invariant, const std::string& subject) {
    for (const Violation& v : Check(history, seen)) {
      if (v.invariant == invariant && v.subject == subject) return true;
    }
    return false;
  }
};

TEST_F(Consistent, HasNoViolation) {
  auto found = Check(history, seen);
  EXPECT_TRUE(found.empty()) << ToString(found.front());
}

TEST_F(Consistent, AnUnfinishedOrLostTransactionBreaksInvariant1) {
  seen.final_status["g1"] = "committing";
  EXPECT_TRUE(Finds(1, "g1"));
  seen.final_status.erase("g3");
  EXPECT_TRUE(Finds(1, "g3")) << "an accepted msg order the store lost";
}

TEST_F(Consistent, ServicesDisagreeingWithTheOutcomeBreakInvariant2) {
  seen.orders[0].status = "cancelled";  // g1 committed without its order
  EXPECT_TRUE(Finds(2, "g1"));
}

TEST_F(Consistent, StockNotConservedOrSoldWithoutACommitBreaksInvariant2) {
  seen.stock["H1"] = {7, 0, 3};
  EXPECT_TRUE(Finds(2, "H1"));
  seen.stock["H1"] = {8, 1, 2};
  EXPECT_TRUE(Finds(2, "H1"));
  EXPECT_TRUE(Finds(3, "H1")) << "stock left reserved";
  seen.prepared["inventory"] = 1;
  EXPECT_TRUE(Finds(2, "inventory"));
}

TEST_F(Consistent, AnAbortedSagaOrTccWithAnEffectLeftBreaksInvariant3) {
  seen.payments.push_back({"g2", "charge-payment", "paid"});
  EXPECT_TRUE(Finds(3, "g2")) << "a payment of an aborted saga left charged";
  seen.orders[3].status = "pending";
  EXPECT_TRUE(Finds(3, "g4")) << "a try of an aborted TCC left applied";
}

TEST_F(Consistent, AMessageWithoutItsCommitOrACommitWithoutItsMessageBreaksInvariant4) {
  seen.final_status["g3"] = "aborted";
  EXPECT_TRUE(Finds(4, "g3"));
  seen.final_status["g3"] = "committed";
  seen.topic.erase(seen.topic.begin() + 3);
  EXPECT_TRUE(Finds(4, "g3"));
}

TEST_F(Consistent, AnEventLostAppliedTwiceOrOutOfOrderBreaksInvariant5) {
  seen.sales["H1"].placed = 5;
  EXPECT_TRUE(Finds(5, "H1")) << "applied twice";
  SetUp();
  std::swap(seen.topic[1], seen.topic[4]);
  EXPECT_TRUE(Finds(5, "g2:create-order:OrderCancelled")) << "cancelled published before placed";
  SetUp();
  seen.topic.erase(seen.topic.begin() + 4);
  seen.sales["C00000"].cancelled = 0;
  seen.inbox.erase("g2:create-order:OrderCancelled");
  EXPECT_TRUE(Finds(5, "g2:create-order:OrderCancelled")) << "sent, never on the topic";
  seen.outbox[2].status = "dead";
  EXPECT_TRUE(Finds(5, "g2:create-order:OrderCancelled"));
}

TEST_F(Consistent, AnAnswerTheOutcomeContradictsBreaksInvariant6) {
  history.push_back(Answer("g2", "submit", 200, "committed"));
  EXPECT_TRUE(Finds(6, "g2"));
}

TEST_F(Consistent, AnAcceptedAbortOfATransactionThatCommittedBreaksInvariant6) {
  history.push_back(Answer("g4", "abort", 202, "aborting"));
  EXPECT_FALSE(Finds(6, "g4")) << "g4 ended aborted, as its accepted abort promised";
  history.push_back(Answer("g1", "abort", 202, "aborting"));
  EXPECT_TRUE(Finds(6, "g1")) << "an abort was accepted, and the transaction committed";
}

TEST_F(Consistent, AnUnfinishedTransactionOutsideTheHistoryBreaksInvariant1) {
  seen.final_status["stray"] = "prepared";
  EXPECT_TRUE(Finds(1, "stray"));
}

}  // namespace
}  // namespace treaty::chaos
