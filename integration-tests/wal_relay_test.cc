// treaty-relay's mode: wal end to end: PostgreSQL with wal_level = logical, events written with
// the participant kit (rows, rows deleted in their own transaction, logical decoding messages),
// relays streaming the slot to the dev broker, the topic read back by a separate process, and
// inventory-svc consuming through its inbox.

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <pqxx/pqxx>
#include <set>

#include "integration-tests/harness/http_client.h"
#include "integration-tests/outbox_fixture.h"
#include "outbox/outbox.h"

namespace treaty::harness {
namespace {

using participant::Outbox;
using participant::OutboxEvent;

class WalRelayTest : public OutboxFixture {
 protected:
  WalRelayTest() {
    pg_options_.logical_decoding = true;
    // Batches of 100 (the default is 5,000): several batches even in the small tests, and a
    // relay killed mid-way in the takeover test.
    relay_extra_yaml_ = "mode: wal\nwal: { standby_retry: 100ms, batch_size: 100 }\n";
  }

  enum class How { kRow, kRowDeleted, kMessage };

  // `count` OrderPlaced events over `aggregates` orders (per-aggregate sequence numbers in the
  // payloads), 100 to a transaction.
  void Write(int count, int aggregates, const std::string& prefix, How how) {
    pqxx::connection c(pg_->ConnectionString("orders"));
    for (int done = 0; done < count;) {
      pqxx::work tx(c);
      for (int i = 0; i < 100 && done < count; ++i, ++done) {
        std::string order = prefix + "-order-" + std::to_string(done % aggregates);
        OutboxEvent e{.event_id = prefix + "-" + std::to_string(done),
                      .aggregate_type = "order",
                      .aggregate_id = order,
                      .event_type = "OrderPlaced",
                      .topic = kTopic,
                      .payload_json = R"({"order":")" + order + R"(","seq":)" +
                                      std::to_string(done / aggregates) + R"(,"sku":")" + order +
                                      R"(","qty":1})"};
        if (how == How::kRow) {
          Outbox::Append(tx, e, /*notify=*/false);
        } else {
          Outbox::AppendForWal(
              tx, e,
              how == How::kMessage ? Outbox::WalWrite::kMessage : Outbox::WalWrite::kRowDeleted);
        }
      }
      tx.commit();
    }
  }

  std::vector<std::string> ReadTopic(int count, bool allow_extra) {
    auto lines = broker_->Consume(kTopic, count, allow_extra);
    EXPECT_TRUE(lines.ok()) << lines.status().message();
    return lines.ok() ? *lines : std::vector<std::string>{};
  }

  // Every aggregate's events in order (first arrivals; a redelivered suffix may follow); returns
  // how many distinct events arrived.
  static int CheckOrder(const std::vector<std::string>& lines) {
    std::map<std::string, int> next;
    std::set<std::string> seen;
    for (const std::string& line : lines) {
      size_t tab = line.find('\t');
      std::string key = line.substr(0, tab), value = line.substr(tab + 1);
      int seq = std::stoi(value.substr(value.find("\"seq\":") + 6));
      if (!seen.insert(key + "#" + std::to_string(seq)).second) continue;
      EXPECT_EQ(seq, next[key]) << key << " out of order";
      next[key] = seq + 1;
    }
    return static_cast<int>(seen.size());
  }

  // A metric's value in a relay's /metrics; -1 when missing.
  static int64_t Metric(Service& relay, const std::string& name) {
    auto m = HttpCall("GET", relay.base_url() + "/metrics");
    if (!m.ok()) return -1;
    size_t at = m->body.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stoll(m->body.substr(at + name.size() + 2));
  }

  // The slot's lag as PostgreSQL reports it, with no relay to ask.
  int64_t LagBytes() {
    auto v = pg_->QueryValue("orders",
                             "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) "
                             "FROM pg_replication_slots WHERE slot_name = 'treaty_relay'");
    return v.ok() && !v->empty() ? std::stoll(*v) : -1;
  }

  int TableRows(const std::string& where = "true") {
    return Count("orders", "SELECT count(*) FROM treaty_outbox WHERE " + where);
  }
};

TEST_F(WalRelayTest, EveryEventArrivesOnceInOrderWhateverWayItWasWritten) {
  auto consumer = StartConsumer();
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay && consumer);
  Write(2000, 20, "row", How::kRow);
  Write(2000, 20, "deleted", How::kRowDeleted);
  Write(2000, 20, "message", How::kMessage);
  EXPECT_EQ(CheckOrder(ReadTopic(6000, /*allow_extra=*/false)), 6000);
  ASSERT_TRUE(WaitUntil([&] { return Metric(*relay, "treaty_relay_published_total") == 6000; },
                        std::chrono::seconds(60)));
  // Nothing was marked or read again: the rows written as rows are as they were written, the
  // others left no row.
  EXPECT_EQ(TableRows(), 2000);
  EXPECT_EQ(TableRows("status = 'pending' AND attempts = 0"), 2000);
  EXPECT_EQ(Metric(*relay, "treaty_relay_wal_streaming"), 1);
  // Everything was acknowledged, so the slot's confirmed position catches up with the WAL.
  EXPECT_TRUE(WaitUntil([&] { return Metric(*relay, "treaty_relay_wal_lag_bytes") == 0; },
                        std::chrono::seconds(60)))
      << "lag " << Metric(*relay, "treaty_relay_wal_lag_bytes");
  EXPECT_TRUE(WaitUntil(
      [&] { return Count("inventory", "SELECT coalesce(sum(placed), 0) FROM sales") == 6000; },
      std::chrono::seconds(120)));
}

// A relay stopped cleanly confirms what it published: the next one starts after it, and events
// written meanwhile wait in the slot (the lag shows them) and are not lost.
TEST_F(WalRelayTest, ARelayStoppedAndStartedAgainPublishesEachEventOnce) {
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay);
  Write(500, 10, "before", How::kRowDeleted);
  ASSERT_TRUE(WaitUntil([&] { return Metric(*relay, "treaty_relay_published_total") == 500; },
                        std::chrono::seconds(60)));
  ASSERT_TRUE(relay->Stop().ok());
  Write(500, 10, "during", How::kRowDeleted);
  EXPECT_GT(LagBytes(), 0) << "the events written meanwhile wait in the slot";
  ASSERT_OK(relay->Restart());
  ASSERT_TRUE(WaitUntil([&] { return Metric(*relay, "treaty_relay_published_total") == 500; },
                        std::chrono::seconds(60)));
  EXPECT_EQ(CheckOrder(ReadTopic(1000, /*allow_extra=*/false)), 1000);
}

// Two relays on one slot: one streams, the other waits. The streaming one killed mid-stream
// (SIGKILL), the standby takes over from the slot's confirmed position: nothing lost, each
// aggregate in order, the duplicates absorbed by the inbox.
TEST_F(WalRelayTest, AStandbyTakesOverFromAKilledRelayAndNothingIsLost) {
  auto consumer = StartConsumer();
  auto a = StartRelay("relay-a");
  auto b = StartRelay("relay-b");
  ASSERT_TRUE(a && b && consumer);
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Metric(*a, "treaty_relay_wal_streaming") +
                   Metric(*b, "treaty_relay_wal_streaming") ==
               1;
      },
      std::chrono::seconds(30)))
      << "not exactly one relay streams the slot";
  Service& active = Metric(*a, "treaty_relay_wal_streaming") == 1 ? *a : *b;
  Service& standby = &active == a.get() ? *b : *a;
  // Each produce round trip takes 40 ms more, so that the active relay is mid-way when killed.
  ASSERT_OK(broker_->Command("rtt 1 40"));
  Write(10000, 100, "k", How::kRowDeleted);
  ASSERT_TRUE(WaitUntil([&] { return Metric(active, "treaty_relay_published_total") >= 1000; },
                        std::chrono::seconds(60)));
  ASSERT_TRUE(active.Kill().ok());
  EXPECT_EQ(Metric(standby, "treaty_relay_published_total"), 0);
  ASSERT_OK(broker_->Command("rtt 1 0"));
  ASSERT_TRUE(WaitUntil([&] { return Metric(standby, "treaty_relay_wal_streaming") == 1; },
                        std::chrono::seconds(60)))
      << "the standby never took the slot over";
  EXPECT_EQ(CheckOrder(ReadTopic(10000, /*allow_extra=*/true)), 10000) << "an event was lost";
  EXPECT_TRUE(
      WaitUntil([&] { return Count("inventory", "SELECT count(*) FROM treaty_inbox") == 10000; },
                std::chrono::seconds(120)));
  EXPECT_EQ(Count("inventory", "SELECT coalesce(sum(placed), 0) FROM sales"), 10000)
      << "a redelivered event was applied twice";
  // The killed relay, started again, waits as the standby.
  ASSERT_OK(active.Restart());
  EXPECT_TRUE(WaitUntil([&] { return Metric(active, "treaty_relay_wal_streaming") == 0; },
                        std::chrono::seconds(30)));
  EXPECT_EQ(Metric(standby, "treaty_relay_wal_streaming"), 1);
}

// The broker down: every event fails and waits behind its aggregate's first, the slot's
// confirmed position stays before them all (however far the server has streamed), and a relay
// killed then and started again publishes every one once the broker is back.
TEST_F(WalRelayTest, ARelayKilledWhileTheBrokerIsDownLosesNothing) {
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay);
  ASSERT_OK(broker_->Command("down 1"));
  Write(300, 10, "d", How::kRowDeleted);
  ASSERT_TRUE(WaitUntil([&] { return Metric(*relay, "treaty_relay_wal_held_events") == 300; },
                        std::chrono::seconds(60)))
      << "held: " << Metric(*relay, "treaty_relay_wal_held_events");
  EXPECT_GT(Metric(*relay, "treaty_relay_failures_total"), 0);
  EXPECT_GT(LagBytes(), 0) << "events not acknowledged were confirmed";
  ASSERT_TRUE(relay->Kill().ok());
  ASSERT_OK(broker_->Command("up 1"));
  ASSERT_OK(relay->Restart());
  EXPECT_EQ(CheckOrder(ReadTopic(300, /*allow_extra=*/true)), 300) << "an event was lost";
}

// PostgreSQL restarted under a streaming relay: the relay reconnects and goes on from the slot's
// confirmed position (slots survive a restart); nothing is lost, each aggregate stays in order.
TEST_F(WalRelayTest, ADatabaseRestartUnderTheRelayLosesNothing) {
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay);
  Write(500, 10, "before", How::kMessage);
  ASSERT_TRUE(WaitUntil([&] { return Metric(*relay, "treaty_relay_published_total") == 500; },
                        std::chrono::seconds(60)));
  ASSERT_OK(pg_->Stop(/*immediate=*/true));
  ASSERT_OK(pg_->Restart());
  Write(500, 10, "after", How::kMessage);
  EXPECT_EQ(CheckOrder(ReadTopic(1000, /*allow_extra=*/true)), 1000) << "an event was lost";
  EXPECT_TRUE(WaitUntil([&] { return Metric(*relay, "treaty_relay_wal_streaming") == 1; },
                        std::chrono::seconds(60)));
}

// An event the broker will never take (larger than a message may be), written as `how`.
void WritePoison(PgCluster& pg, Outbox::WalWrite how) {
  pqxx::connection c(pg.ConnectionString("orders"));
  pqxx::work tx(c);
  Outbox::AppendForWal(
      tx,
      OutboxEvent{.event_id = "poison",
                  .aggregate_type = "order",
                  .aggregate_id = "p-order-0",
                  .event_type = "OrderPlaced",
                  .topic = kTopic,
                  .payload_json = R"({"seq":0,"blob":")" + std::string(1500000, 'x') + "\"}"},
      how);
  tx.commit();
}

TEST_F(WalRelayTest, APoisonEventBlocksOnlyItsAggregateByDefault) {
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay);
  WritePoison(*pg_, Outbox::WalWrite::kRowDeleted);
  Write(40, 4, "p", How::kRowDeleted);  // p-order-0's events come after the poison one
  EXPECT_EQ(CheckOrder(ReadTopic(30, /*allow_extra=*/false)), 30);
  // The poison event and its aggregate's ten later events wait (in memory; the slot keeps them).
  EXPECT_TRUE(WaitUntil([&] { return Metric(*relay, "treaty_relay_wal_held_events") == 11; },
                        std::chrono::seconds(60)))
      << Metric(*relay, "treaty_relay_wal_held_events");
  EXPECT_GT(Metric(*relay, "treaty_relay_wal_lag_bytes"), 0);
}

TEST_F(WalRelayTest, APoisonEventIsSetAsideWithDeadLetter) {
  auto relay = StartRelay("relay", 500, "dead_letter");
  ASSERT_TRUE(relay);
  WritePoison(*pg_, Outbox::WalWrite::kMessage);
  Write(40, 4, "p", How::kMessage);
  EXPECT_EQ(CheckOrder(ReadTopic(40, /*allow_extra=*/false)), 40);
  ASSERT_TRUE(WaitUntil([&] { return Metric(*relay, "treaty_relay_dead_total") == 1; },
                        std::chrono::seconds(60)));
  // The dead letter is a row of the table (the event had none), with its reason.
  EXPECT_EQ(TableRows("status = 'dead' AND event_id = 'poison' AND last_error LIKE '%too large%'"),
            1);
  EXPECT_EQ(Metric(*relay, "treaty_relay_wal_held_events"), 0);
}

TEST_F(WalRelayTest, ARolledBackEventIsNeverPublished) {
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay);
  {
    pqxx::connection c(pg_->ConnectionString("orders"));
    pqxx::work tx(c);
    Outbox::AppendForWal(tx,
                         OutboxEvent{.event_id = "ghost",
                                     .aggregate_type = "order",
                                     .aggregate_id = "g",
                                     .event_type = "OrderPlaced",
                                     .topic = kTopic,
                                     .payload_json = R"({"seq":0,"ghost":true})"},
                         Outbox::WalWrite::kMessage);
    tx.abort();
  }
  Write(1, 1, "real", How::kMessage);
  auto lines = ReadTopic(1, /*allow_extra=*/false);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find("ghost"), std::string::npos) << lines[0];
}

// The writing transaction's trace context (docs/outbox.md) reaches the message's traceparent
// header whichever way the event was written: a row kept, a row deleted at once, a message.
TEST_F(WalRelayTest, TheWritingTransactionsTraceContextBecomesTheTraceparentHeader) {
  auto relay = StartRelay("relay");
  ASSERT_TRUE(relay);
  const std::string tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  {
    pqxx::connection c(pg_->ConnectionString("orders"));
    pqxx::work tx(c);
    Outbox::SetTraceContext(tx, tp);
    int n = 0;
    for (How how : {How::kRow, How::kRowDeleted, How::kMessage}) {
      OutboxEvent e{.event_id = "traced-" + std::to_string(n),
                    .aggregate_type = "order",
                    .aggregate_id = "traced-" + std::to_string(n),
                    .event_type = "OrderPlaced",
                    .topic = kTopic,
                    .payload_json = R"({"seq":0})"};
      ++n;
      if (how == How::kRow) {
        Outbox::Append(tx, e, /*notify=*/false);
      } else {
        Outbox::AppendForWal(
            tx, e,
            how == How::kMessage ? Outbox::WalWrite::kMessage : Outbox::WalWrite::kRowDeleted);
      }
    }
    tx.commit();
  }
  auto lines = broker_->Consume(kTopic, 3, /*allow_extra=*/false, /*headers=*/true);
  ASSERT_TRUE(lines.ok()) << lines.status().message();
  ASSERT_EQ(lines->size(), 3u);
  for (const std::string& line : *lines) {
    EXPECT_NE(line.find("traceparent=" + tp + ";"), std::string::npos) << line;
  }
}

TEST_F(WalRelayTest, ABadWalConfigNamesFileLineAndKey) {
  auto dir = TempDir::Create("wal-config");
  ASSERT_TRUE(dir.ok());
  std::string f = dir->File("relay-bad.yaml");
  std::ofstream(f) << "listen: 127.0.0.1:0\nmode: stream\nwal:\n  slot: \"Bad Slot\"\n";
  auto p = Process::Start(ProcessSpec{.name = "relay-check",
                                      .argv = {kRelayPath, "--check-config", f},
                                      .log_path = dir->File("relay-check.log")});
  ASSERT_TRUE(p.ok()) << p.status().message();
  auto code = (*p)->Wait(std::chrono::seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 2);
  std::string out = (*p)->ReadLog();
  EXPECT_NE(out.find(f + ":2: mode: "), std::string::npos) << out;
  EXPECT_NE(out.find(f + ":4: wal.slot: "), std::string::npos) << out;
}

}  // namespace
}  // namespace treaty::harness
