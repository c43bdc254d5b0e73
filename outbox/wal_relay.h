#pragma once

// WalRelay (`mode: wal`) publishes the outbox's events from the service database's write-ahead
// log, the way Debezium does, instead of reading and marking rows (relay.h):
//
//   - it streams a logical replication slot with PostgreSQL's built-in `pgoutput` plugin over
//     libpq's replication protocol (`replication=database`, START_REPLICATION ... LOGICAL), for
//     a publication of the outbox table's inserts, with `messages 'true'`;
//   - each committed insert into the outbox table, and each logical decoding message whose
//     prefix is the table's name (pg_logical_emit_message: no table at all), is an event; they
//     come in commit order, which gives each aggregate its order;
//   - events are published in batches with the idempotent producer; the slot's flush position
//     is confirmed only up to the end of the last transaction all of whose events (and all
//     before) the broker acknowledged. Nothing is updated or read again in the table. A relay
//     that dies is sent again, from the confirmed position, what it had not confirmed: at
//     least once (consumers drop duplicates with the inbox).
//
// A failed event blocks its aggregate, and only it, as in the polling relay: the aggregate's
// later events wait in memory behind it (other aggregates go on) and the failed one is tried
// again alone with backoff (retry.initial to retry.max); the confirmed position stays before it
// meanwhile, so PostgreSQL keeps the WAL from there. Beyond wal.max_held events waiting so, the
// stream pauses until they go. A poison event (the broker will never take it) does the same
// with `poison: block`; with `poison: dead_letter` it is written to the table with status
// 'dead' and its reason (a row the application inserted there is updated) and its aggregate
// goes on.
//
// The slot streams to one relay at a time: a second relay on the same slot is a hot standby. It
// asks for the slot every wal.standby_retry and gets it as soon as the streaming relay's
// session ends (a relay killed with SIGKILL: as soon as its connection is seen closed).

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/kafka/kafka_publisher.h"
#include "common/log.h"
#include "common/pg/pg_pool.h"
#include "common/thread_annotations.h"
#include "outbox/pgoutput.h"
#include "outbox/relay_config.h"

namespace treaty::outbox {

class WalRelay {
 public:
  WalRelay(const RelayConfig& config, std::unique_ptr<kafka::KafkaPublisher> publisher,
           const Logger& log);
  ~WalRelay();

  // Creates the publication and the slot if missing (the slot starts at the WAL's current end:
  // events committed before it was created are not in it). Run() calls it too until it works.
  Status Setup();

  // Streams the slot (or waits as a standby) until `stop` is set; confirms what was
  // acknowledged before it returns.
  void Run(const std::atomic<bool>& stop);

  // Prometheus text: published, failures, dead, streaming (this relay holds the slot), the
  // slot's lag (WAL written since its confirmed position) and retained WAL, held events.
  std::string Metrics();

 private:
  struct Event {
    uint64_t tx = 0;  // its transaction's sequence number
    std::string aggregate;
    WalEvent wal;
  };
  // A transaction whose events are not all acknowledged yet (or the last ones before the
  // confirmed position advances past it).
  struct TxMark {
    uint64_t end_lsn = 0;
    int64_t outstanding = 0;  // events not yet acknowledged or set aside
  };
  struct Blocked {
    std::deque<Event> held;  // the failed event first, then the aggregate's later ones
    std::chrono::steady_clock::time_point retry_at;
    Duration backoff{};
  };
  class Stream;

  // One streaming session: Unavailable on a lost connection, Conflict when another relay
  // streams the slot, NotFound when the slot is missing; Ok when stopped.
  Status StreamOnce(const std::atomic<bool>& stop);
  // Handles one CopyData message of the stream.
  Status OnFrame(std::string_view data, Stream& stream);
  class Publishing;
  // A batch handed to the producer: its events, the message of each (by position), the
  // blocked aggregates retried in it with their backoff so far.
  struct InFlight {
    std::vector<Event> batch;
    std::vector<size_t> index;  // message -> position in batch (malformed events have none)
    std::map<std::string, Duration, std::less<>> retried;
  };
  // Puts the due blocked aggregates' events and up to a batch of ready ones together and
  // hands them to `publishing`; false when there was nothing to publish.
  bool StartBatch(Publishing& publishing);
  // The in-flight batch's outcome: settles what was acknowledged (or set aside), blocks the
  // aggregates of what failed.
  void FinishBatch(std::vector<kafka::Delivery> delivered);
  bool HasDueRetry(std::chrono::steady_clock::time_point now) const;
  void Settle(uint64_t tx);
  // Writes a poison event to the table with status 'dead'; false if that failed.
  bool DeadLetter(const Event& e, const std::string& error);
  void DeleteOldRows();

  const RelayConfig config_;
  std::unique_ptr<kafka::KafkaPublisher> publisher_;
  const Logger& log_;
  pg::PgPool pool_;  // /metrics, dead letters, retention

  // The streaming session's state (Run's thread only).
  PgOutputDecoder decoder_;
  bool in_tx_ = false;
  std::vector<WalEvent> open_;  // the current transaction's events
  std::deque<TxMark> txs_;
  uint64_t first_tx_ = 0;  // sequence number of txs_.front()
  uint64_t next_tx_ = 0;
  std::deque<Event> ready_;  // committed, not yet handed to the producer
  std::optional<InFlight> in_flight_;
  std::map<std::string, Blocked, std::less<>> blocked_;
  size_t held_ = 0;             // events in blocked_
  uint64_t confirmed_ = 0;      // the position confirmed (or to confirm) to the server
  uint64_t keepalive_end_ = 0;  // the last keepalive's position

  std::atomic<bool> streaming_{false};
  std::atomic<int64_t> held_gauge_{0};
  std::atomic<int64_t> published_{0};
  std::atomic<int64_t> failures_{0};
  std::atomic<int64_t> dead_{0};
};

}  // namespace treaty::outbox
