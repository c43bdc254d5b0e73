// The outbox's consistency promises under faults, end to end: treaty-relay processes publishing
// a real PostgreSQL table to the dev broker, read back by a separate consumer process, and
// inventory-svc consuming through its inbox.
//
//   - an aggregate blocked by a row the broker refuses holds up no other aggregate, however many
//     rows it has waiting, and nothing the broker acknowledged is published again;
//   - a consumer stopped while its apply of a message fails does not skip that message.

#include <gtest/gtest.h>

#include <map>
#include <pqxx/pqxx>
#include <set>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/dev_broker.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/service.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/outbox_fixture.h"
#include "outbox/outbox.h"

namespace treaty::harness {
namespace {

using participant::Outbox;
using participant::OutboxEvent;

class ConsistencyOutboxTest : public OutboxFixture {
 protected:
  // One OrderPlaced event of qty 1 for `sku`, numbered `seq` in its aggregate `order`.
  static void Append(pqxx::work& tx, const std::string& event_id, const std::string& order, int seq,
                     const std::string& sku, const std::string& topic = kTopic) {
    Outbox::Append(tx, OutboxEvent{.event_id = event_id,
                                   .aggregate_type = "order",
                                   .aggregate_id = order,
                                   .event_type = "OrderPlaced",
                                   .topic = topic,
                                   .payload_json = R"({"order":")" + order + R"(","seq":)" +
                                                   std::to_string(seq) + R"(,"sku":")" + sku +
                                                   R"(","qty":1})"});
  }

  // The relay's counter `name` from /metrics (-1 when unreadable).
  static int64_t Metric(Service& relay, const std::string& name) {
    auto m = HttpCall("GET", relay.base_url() + "/metrics");
    if (!m.ok()) return -1;
    size_t at = m->body.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::stoll(m->body.substr(at + name.size() + 2));
  }
};

// Aggregate x's first row goes to a topic the broker refuses (authorization failed), and 1,150
// rows of x wait behind it on orders.events, ahead of 50 other aggregates' rows: more than the
// 1,000 oldest pending rows a round used to choose its batch from (batch_size × workers), so
// that x's rows alone filled that window and the others never left. And x's rows on
// orders.events, which the broker does take, were published again at every retry of x because
// they were not marked while x's first row failed.
TEST_F(ConsistencyOutboxTest, ABlockedAggregateHoldsUpNoOtherAndNothingAcknowledgedIsSentTwice) {
  const std::string refusing = "orders.audit";
  ASSERT_OK(broker_->Command("create-topic " + refusing + " 1 1"));
  ASSERT_OK(broker_->Command("topic-error " + refusing + " 29"));  // TOPIC_AUTHORIZATION_FAILED
  constexpr int kBehind = 1150, kOthers = 50, kEach = 20;
  {
    pqxx::connection c(pg_->ConnectionString("orders"));
    pqxx::work tx(c);
    Append(tx, "x-refused", "x", -1, "x", refusing);
    for (int seq = 0; seq < kBehind; ++seq) Append(tx, "x-" + std::to_string(seq), "x", seq, "x");
    for (int seq = 0; seq < kEach; ++seq) {
      for (int a = 0; a < kOthers; ++a) {
        std::string order = "o" + std::to_string(a);
        Append(tx, order + "-" + std::to_string(seq), order, seq, order);
      }
    }
    tx.commit();
  }
  auto relay = StartRelay("relay", /*batch_size=*/500, "block", /*workers=*/2);
  ASSERT_TRUE(relay);

  // Every other aggregate's rows are published while x's first row keeps failing...
  auto others_pending = [&] {
    return Count("orders",
                 "SELECT count(*) FROM treaty_outbox WHERE status = 'pending' AND "
                 "aggregate_id <> 'x'");
  };
  ASSERT_TRUE(WaitUntil([&] { return others_pending() == 0; }, std::chrono::seconds(60)))
      << "other aggregates' rows still pending behind the blocked one: " << others_pending();
  // ... and tried again at least twice after it blocked x (its retries, spaced by backoff).
  ASSERT_TRUE(WaitUntil([&] { return Metric(*relay, "treaty_relay_failures_total") >= 3; },
                        std::chrono::seconds(30)))
      << "failures: " << Metric(*relay, "treaty_relay_failures_total");
  EXPECT_EQ(pg_->QueryValue("orders",
                            "SELECT status FROM treaty_outbox WHERE event_id = "
                            "'x-refused'")
                .value(),
            "pending");
  EXPECT_GE(Count("orders", "SELECT attempts FROM treaty_outbox WHERE event_id = 'x-refused'"), 3);

  // x stays blocked: what the broker took of it in the round that first failed (its rows
  // produced before the refusal came back) is marked sent; the rest waits.
  const int x_sent = Count("orders",
                           "SELECT count(*) FROM treaty_outbox WHERE aggregate_id = 'x' AND "
                           "status = 'sent'");
  EXPECT_LT(x_sent, kBehind) << "x's rows went on while its first row was refused";

  // On the topic: every other aggregate's events in order, and x's marked ones, each once (no
  // more messages than that: a second copy of any would be one too many).
  auto lines = broker_->Consume(kTopic, kOthers * kEach + x_sent, /*allow_extra=*/false);
  ASSERT_TRUE(lines.ok()) << lines.status().message();
  std::map<std::string, int> next;  // aggregate -> next seq expected
  std::set<std::string> seen;
  int x_delivered = 0;
  for (const std::string& line : *lines) {
    size_t tab = line.find('\t');
    std::string key = line.substr(0, tab), value = line.substr(tab + 1);
    int seq = std::stoi(value.substr(value.find("\"seq\":") + 6));
    EXPECT_TRUE(seen.insert(key + "#" + std::to_string(seq)).second)
        << key << " #" << seq << " delivered twice";
    if (key == "x") {
      ++x_delivered;
    } else {
      EXPECT_EQ(seq, next[key]) << key << " out of order";
      next[key] = seq + 1;
    }
  }
  EXPECT_EQ(x_delivered, x_sent);
  EXPECT_EQ(static_cast<int>(next.size()), kOthers);
  for (const auto& [key, n] : next) EXPECT_EQ(n, kEach) << key;
}

// inventory-svc's applies fail (its fault switch's "event" op) when an order event arrives; it
// is stopped gracefully meanwhile and started again without the fault. The event must be
// applied then, once: the stop used to commit the offset of the message it never applied, and
// the restarted consumer went on after it. A second event of the same order (same key, so the
// same partition, after the first) shows the restarted consumer has read that far.
TEST_F(ConsistencyOutboxTest, AConsumerStoppedWhileItsApplyFailsAppliesTheEventOnceAfterRestart) {
  auto inventory = StartConsumer();
  ASSERT_TRUE(inventory);
  auto fault = HttpCall("POST", inventory->base_url() + "/admin/faults",
                        R"({"op": "event", "action": "fail"})");
  ASSERT_TRUE(fault.ok() && fault->status == 200);
  {
    pqxx::connection c(pg_->ConnectionString("orders"));
    pqxx::work tx(c);
    Append(tx, "failing-event", "o1", 0, "sku-failing");
    tx.commit();
  }
  auto relay = StartRelay("relay", /*batch_size=*/100, "block", /*workers=*/1);
  ASSERT_TRUE(relay);
  // The consumer got the event and its apply failed.
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::string log = inventory->process().ReadLog();
        return log.find("event not applied yet") != std::string::npos &&
               log.find("failing-event") != std::string::npos;
      },
      std::chrono::seconds(60)));
  auto stopped = inventory->Stop();
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(*stopped, 0) << "not a graceful stop";
  EXPECT_EQ(Count("inventory", "SELECT count(*) FROM treaty_inbox"), 0);

  ASSERT_OK(inventory->Restart());  // the fault switch starts off
  {
    pqxx::connection c(pg_->ConnectionString("orders"));
    pqxx::work tx(c);
    Append(tx, "later-event", "o1", 1, "sku-later");
    tx.commit();
  }
  ASSERT_TRUE(WaitUntil(
      [&] { return Count("inventory", "SELECT count(*) FROM sales WHERE sku = 'sku-later'") == 1; },
      std::chrono::seconds(60)))
      << "the restarted consumer never applied the later event";
  EXPECT_EQ(Count("inventory",
                  "SELECT coalesce(sum(placed), 0) FROM sales WHERE sku = "
                  "'sku-failing'"),
            1)
      << "the event whose apply failed at the stop was skipped (or applied twice)";
  EXPECT_EQ(Count("inventory",
                  "SELECT count(*) FROM treaty_inbox WHERE event_id IN "
                  "('failing-event', 'later-event')"),
            2);
}

}  // namespace
}  // namespace treaty::harness
