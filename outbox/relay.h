#pragma once

// OutboxRelay moves rows of a service's outbox table to Kafka, preserving each aggregate's order:
//
//   1. in one database transaction, take the oldest pending aggregates, each under an advisory
//      lock (so no other relay touches that aggregate until this transaction ends), and lock
//      their pending rows in id order (up to batch_size);
//   2. publish them with the idempotent producer and wait for the broker's acknowledgements;
//   3. per aggregate, mark sent (or delete) the rows acknowledged before the first failure;
//      a failed row and everything after it in its aggregate stay pending (a poison row, one the
//      broker will never take, is moved to "dead" instead when so configured); commit.
//
// A relay that dies mid-batch leaves its rows pending (its transaction rolls back): they are
// published again (at least once; consumers drop duplicates with the inbox). Wakes on
// NOTIFY treaty_outbox, polls otherwise. Thread-safe counters for /metrics.

#include <atomic>
#include <memory>
#include <string>

#include "common/log.h"
#include "common/pg/pg_pool.h"
#include "common/kafka/kafka_publisher.h"
#include "outbox/relay_config.h"

namespace treaty::outbox {

using kafka::Delivery;
using kafka::KafkaPublisher;
using kafka::OutgoingMessage;

struct RelayCounters {
  std::atomic<int64_t> published{0};  // rows acknowledged and marked
  std::atomic<int64_t> failures{0};   // rows whose publishing failed
  std::atomic<int64_t> dead{0};       // rows moved to "dead"
};

class OutboxRelay {
 public:
  OutboxRelay(const RelayConfig& config, std::unique_ptr<KafkaPublisher> publisher,
              const Logger& log);

  // Runs batches until `stop` is set; returns after the current batch.
  void Run(const std::atomic<bool>& stop);

  // One claim-publish-mark round; returns how many rows it handled (published, failed or dead).
  // For tests and tools.
  Result<int> RunBatch();

  const RelayCounters& counters() const { return counters_; }

  // Prometheus text: pending rows, oldest pending age, published, failures, dead.
  std::string Metrics();

 private:
  void DeleteOldSentRows();

  const RelayConfig config_;
  std::unique_ptr<KafkaPublisher> publisher_;
  const Logger& log_;
  pg::PgPool pool_;
  RelayCounters counters_;
};

}  // namespace treaty::outbox
