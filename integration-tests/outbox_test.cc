// The outbox end to end: rows written with the participant kit in real PostgreSQL transactions,
// treaty-relay processes publishing to the dev broker, the topic read back by a separate
// consumer process, and inventory-svc consuming through its inbox.

#include "outbox/outbox.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <set>
#include <sstream>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/dev_broker.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/service.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/outbox_fixture.h"

namespace treaty::harness {
namespace {

using participant::Outbox;
using participant::OutboxEvent;

class OutboxTest : public OutboxFixture {
 protected:
  void SetUp() override {
    OutboxFixture::SetUp();
    auto dir = TempDir::Create("outbox-test");
    ASSERT_TRUE(dir.ok());
    dir_ = std::move(*dir);
  }

  // `count` OrderPlaced events of qty 1, spread round-robin over `aggregates` orders whose SKU
  // is the order's; each payload carries its per-aggregate sequence number.
  void Write(int count, int aggregates, const std::string& prefix = "e") {
    pqxx::connection c(pg_->ConnectionString("orders"));
    for (int done = 0; done < count;) {
      pqxx::work tx(c);
      for (int i = 0; i < 500 && done < count; ++i, ++done) {
        int agg = done % aggregates;
        int seq = done / aggregates;
        std::string order = prefix + "-order-" + std::to_string(agg);
        Outbox::Append(tx, OutboxEvent{.event_id = prefix + "-" + std::to_string(done),
                                       .aggregate_type = "order",
                                       .aggregate_id = order,
                                       .event_type = "OrderPlaced",
                                       .topic = kTopic,
                                       .payload_json = R"({"order":")" + order + R"(","seq":)" +
                                                       std::to_string(seq) + R"(,"sku":")" + order +
                                                       R"(","qty":1})"});
      }
      tx.commit();
    }
  }

  int Pending() {
    return Count("orders", "SELECT count(*) FROM treaty_outbox WHERE status = 'pending'");
  }

  // Reads the topic from the start in a separate process: "key<TAB>value" lines.
  std::vector<std::string> ReadTopic(int count, bool allow_extra) {
    auto lines = broker_->Consume(kTopic, count, allow_extra);
    EXPECT_TRUE(lines.ok()) << lines.status().message();
    return lines.ok() ? *lines : std::vector<std::string>{};
  }

  // Checks every aggregate's events arrived in order (first arrivals; a redelivered suffix may
  // follow) and returns how many distinct events arrived.
  int CheckOrder(const std::vector<std::string>& lines) {
    std::map<std::string, int> next;  // order -> next expected new seq
    std::set<std::string> seen;
    for (const std::string& line : lines) {
      size_t tab = line.find('\t');
      std::string key = line.substr(0, tab), value = line.substr(tab + 1);
      size_t at = value.find("\"seq\":");
      int seq = std::stoi(value.substr(at + 6));
      if (!seen.insert(key + "#" + std::to_string(seq)).second) continue;  // a duplicate
      EXPECT_EQ(seq, next[key]) << key << " out of order";
      next[key] = seq + 1;
    }
    return static_cast<int>(seen.size());
  }

  // Six workers of one relay, batches of 20, 30 aggregates: 1,000 rows waiting at start, 5,000
  // written while the workers run. Waits until none is pending, checks that every aggregate's
  // events arrived in order and each once, and returns the relay's /metrics ("" on failure).
  std::string DrainWithSixWorkers() {
    Write(1000, 30, "early");
    auto relay = StartRelay("relay", /*batch_size=*/20, "block", /*workers=*/6);
    if (!relay) return "";
    Write(5000, 30);
    EXPECT_TRUE(WaitUntil([&] { return Pending() == 0; }, std::chrono::seconds(120)));
    EXPECT_EQ(CheckOrder(ReadTopic(6000, /*allow_extra=*/false)), 6000);
    auto metrics = HttpCall("GET", relay->base_url() + "/metrics");
    EXPECT_TRUE(metrics.ok());
    return metrics.ok() ? metrics->body : "";
  }

  TempDir dir_;
};

TEST_F(OutboxTest, TenThousandEventsArriveInOrderAndAreMarkedSent) {
  auto consumer = StartConsumer();
  Write(10000, 100);
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay);
  ASSERT_TRUE(WaitUntil([&] { return Pending() == 0; }, std::chrono::seconds(120)));
  EXPECT_EQ(Count("orders", "SELECT count(*) FROM treaty_outbox WHERE status = 'sent'"), 10000);
  EXPECT_EQ(CheckOrder(ReadTopic(10000, /*allow_extra=*/false)), 10000);
  // And inventory-svc applied every one once.
  EXPECT_TRUE(WaitUntil(
      [&] { return Count("inventory", "SELECT coalesce(sum(placed), 0) FROM sales") == 10000; },
      std::chrono::seconds(120)));
  auto metrics = HttpCall("GET", relay->base_url() + "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_NE(metrics->body.find("treaty_relay_pending_rows 0"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("treaty_relay_published_total 10000"), std::string::npos);
}

TEST_F(OutboxTest, ARelayKilledMidBatchLosesNothingAndTheInboxAbsorbsDuplicates) {
  auto consumer = StartConsumer();
  Write(10000, 100);
  // Each produce round trip takes 40 ms more, so that the relay is still mid-way (about 50
  // batches of 200 on two workers: a second or more) when the test sees 2,000 rows sent: without
  // it, a fast machine sent all 10,000 between two looks.
  ASSERT_OK(broker_->Command("rtt 1 40"));
  auto relay = StartRelay("relay", /*batch_size=*/200);
  ASSERT_TRUE(relay);
  ASSERT_TRUE(WaitUntil([&] { return Pending() <= 8000; }, std::chrono::seconds(60)));
  ASSERT_TRUE(relay->Kill().ok());
  int left = Pending();
  EXPECT_GT(left, 0) << "the relay finished before it could be killed";
  ASSERT_OK(broker_->Command("rtt 1 0"));
  ASSERT_OK(relay->Restart());
  ASSERT_TRUE(WaitUntil([&] { return Pending() == 0; }, std::chrono::seconds(120)));
  EXPECT_EQ(CheckOrder(ReadTopic(10000, /*allow_extra=*/true)), 10000) << "an event was lost";
  EXPECT_TRUE(
      WaitUntil([&] { return Count("inventory", "SELECT count(*) FROM treaty_inbox") == 10000; },
                std::chrono::seconds(120)));
  EXPECT_EQ(Count("inventory", "SELECT coalesce(sum(placed), 0) FROM sales"), 10000)
      << "a redelivered event was applied twice";
}

TEST_F(OutboxTest, ABrokerOutageDelaysButLosesNothing) {
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay);
  ASSERT_OK(broker_->Command("down 1"));
  Write(300, 10);
  auto failures = [&] {
    auto m = HttpCall("GET", relay->base_url() + "/metrics");
    return m.ok() && m->body.find("treaty_relay_failures_total 0\n") == std::string::npos;
  };
  ASSERT_TRUE(WaitUntil(failures, std::chrono::seconds(60)))
      << "the relay never noticed the outage";
  EXPECT_EQ(Pending(), 300) << "rows were marked sent while the broker was down";
  ASSERT_OK(broker_->Command("up 1"));
  ASSERT_TRUE(WaitUntil([&] { return Pending() == 0; }, std::chrono::seconds(120)));
  EXPECT_EQ(CheckOrder(ReadTopic(300, /*allow_extra=*/true)), 300);
}

TEST_F(OutboxTest, TwoRelaysOnOneTableKeepEveryAggregateInOrder) {
  auto a = StartRelay("relay-a", 100);
  auto b = StartRelay("relay-b", 100);
  ASSERT_TRUE(a && b);
  Write(5000, 50);
  ASSERT_TRUE(WaitUntil([&] { return Pending() == 0; }, std::chrono::seconds(120)));
  EXPECT_EQ(CheckOrder(ReadTopic(5000, /*allow_extra=*/false)), 5000);
}

// Many workers of one relay, small batches and few aggregates: the workers keep asking for the
// same aggregates, and each aggregate must still be published by one of them at a time, in
// order, each row once.
TEST_F(OutboxTest, ARelaysWorkersShareTheAggregatesAndKeepEachInOrder) {
  std::string metrics = DrainWithSixWorkers();
  EXPECT_EQ(Count("orders", "SELECT count(*) FROM treaty_outbox WHERE status = 'sent'"), 6000);
  EXPECT_NE(metrics.find("treaty_relay_published_total 6000\n"), std::string::npos) << metrics;
}

// The relay re-reads a batch's rows after taking their aggregates' locks and relies on seeing
// what the previous holder committed meanwhile: a database whose default isolation is
// REPEATABLE READ must not make it publish rows again.
TEST_F(OutboxTest, ARepeatableReadDefaultDoesNotMakeTheRelayPublishTwice) {
  ASSERT_OK(pg_->Execute("postgres",
                         "ALTER DATABASE orders SET default_transaction_isolation = "
                         "'repeatable read'"));
  std::string metrics = DrainWithSixWorkers();
  EXPECT_NE(metrics.find("treaty_relay_failures_total 0\n"), std::string::npos) << metrics;
}

TEST_F(OutboxTest, ABadRelayConfigNamesFileLineAndKey) {
  std::string f = dir_.File("relay-bad.yaml");
  std::ofstream(f) << "listen: 127.0.0.1:0\nbatch_size: 100\nworkers: 0\nafter_send: archive\n";
  auto p = Process::Start(ProcessSpec{.name = "relay-check",
                                      .argv = {kRelayPath, "--check-config", f},
                                      .log_path = dir_.File("relay-check.log")});
  ASSERT_TRUE(p.ok()) << p.status().message();
  auto code = (*p)->Wait(std::chrono::seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2);
  std::string out = (*p)->ReadLog();
  EXPECT_NE(out.find(f + ":3: workers: "), std::string::npos) << out;
  EXPECT_NE(out.find(f + ":4: after_send: "), std::string::npos) << out;
}

// A row the broker will never take (larger than a message may be).
void WritePoison(PgCluster& pg, const std::string& aggregate) {
  pqxx::connection c(pg.ConnectionString("orders"));
  pqxx::work tx(c);
  Outbox::Append(
      tx, OutboxEvent{.event_id = "poison",
                      .aggregate_type = "order",
                      .aggregate_id = aggregate,
                      .event_type = "OrderPlaced",
                      .topic = kTopic,
                      .payload_json = R"({"seq":0,"blob":")" + std::string(1500000, 'x') + "\"}"});
  tx.commit();
}

TEST_F(OutboxTest, APoisonRowBlocksOnlyItsAggregateByDefault) {
  WritePoison(*pg_, "p-order-0");
  Write(40, 4, "p");  // p-order-0 .. p-order-3; p-order-0's events come after the poison row
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay);
  ASSERT_TRUE(WaitUntil([&] { return Pending() == 11; }, std::chrono::seconds(60)))
      << "pending: " << Pending();
  EXPECT_EQ(Count("orders",
                  "SELECT count(*) FROM treaty_outbox WHERE status = 'pending' AND "
                  "aggregate_id = 'p-order-0'"),
            11)
      << "the poison row and its aggregate's later events wait; the rest was published";
  auto err =
      pg_->QueryValue("orders", "SELECT last_error FROM treaty_outbox WHERE event_id = 'poison'");
  EXPECT_NE(err->find("too large"), std::string::npos) << *err;
  EXPECT_EQ(CheckOrder(ReadTopic(30, /*allow_extra=*/false)), 30);
}

TEST_F(OutboxTest, APoisonRowIsSetAsideWithDeadLetter) {
  WritePoison(*pg_, "p-order-0");
  Write(40, 4, "p");
  auto relay = StartRelay("relay", 500, "dead_letter");
  ASSERT_TRUE(relay);
  ASSERT_TRUE(WaitUntil([&] { return Pending() == 0; }, std::chrono::seconds(60)));
  EXPECT_EQ(pg_->QueryValue("orders", "SELECT status FROM treaty_outbox WHERE event_id = 'poison'")
                .value(),
            "dead");
  EXPECT_EQ(CheckOrder(ReadTopic(40, /*allow_extra=*/false)), 40);
}

TEST_F(OutboxTest, ARolledBackRowIsNeverPublished) {
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay);
  {
    pqxx::connection c(pg_->ConnectionString("orders"));
    pqxx::work tx(c);
    Outbox::Append(tx, OutboxEvent{.event_id = "ghost",
                                   .aggregate_type = "order",
                                   .aggregate_id = "o1",
                                   .event_type = "OrderPlaced",
                                   .topic = kTopic,
                                   .payload_json = R"({"seq":0,"ghost":true})"});
    tx.abort();
  }
  Write(1, 1, "real");
  ASSERT_TRUE(WaitUntil([&] { return Pending() == 0; }, std::chrono::seconds(60)));
  auto lines = ReadTopic(1, /*allow_extra=*/false);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find("ghost"), std::string::npos) << lines[0];
}

}  // namespace
}  // namespace treaty::harness
