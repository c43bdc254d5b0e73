#pragma once

// OutboxRelay moves rows of a service's outbox table to Kafka, preserving each aggregate's order:
//
//   1. in one database transaction, take the oldest pending aggregates, each under an advisory
//      lock (so no other relay, and no other worker of this one, touches that aggregate until
//      this transaction ends), and read their pending rows in id order (up to batch_size);
//   2. publish them with the idempotent producer and wait for the broker's acknowledgements;
//   3. mark sent (or delete) every row the broker acknowledged; per aggregate, the first failed
//      row and the unacknowledged ones after it stay pending (a poison row, one the broker will
//      never take, is moved to "dead" instead when so configured); commit.
//
// An aggregate whose row failed is blocked: the batches that follow leave its rows out of the
// head they choose from (so that however many rows it has waiting, the other aggregates go on)
// and retry only its failed row, alone, with backoff (retry.initial to retry.max), until the
// broker takes it. Later rows of a blocked aggregate are not published meanwhile, and a row the
// broker acknowledged is never published again, even behind a failed one.
//
// A relay that dies mid-batch leaves its rows pending (its transaction rolls back): they are
// published again (at least once; consumers drop duplicates with the inbox). Wakes on
// NOTIFY treaty_outbox, polls otherwise. Thread-safe counters for /metrics.
//
// `workers` batches are in flight at once, each on its own database session and producer, on
// different aggregates: while one waits for the broker or for its commit, another claims.

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/kafka/kafka_publisher.h"
#include "common/log.h"
#include "common/pg/pg_pool.h"
#include "common/thread_annotations.h"
#include "outbox/relay_config.h"

namespace treaty::outbox {

using kafka::Delivery;
using kafka::KafkaPublisher;
using kafka::OutgoingMessage;

struct RelayCounters {
  std::atomic<int64_t> published{0};  // rows acknowledged and marked
  std::atomic<int64_t> failures{0};   // rows whose publishing failed
  std::atomic<int64_t> dead{0};       // rows moved to "dead"
  std::atomic<int64_t> purged{0};     // sent rows deleted past the retention
};

class OutboxRelay {
 public:
  // One worker per publisher (at least one); config.workers is not consulted here.
  OutboxRelay(const RelayConfig& config, std::vector<std::unique_ptr<KafkaPublisher>> publishers,
              const Logger& log);

  // Runs every worker's batches until `stop` is set; returns after their current batches.
  void Run(const std::atomic<bool>& stop);

  // One claim-publish-mark round of worker `worker` (< the number of publishers, else
  // InvalidArgument); returns how many rows it handled (published, failed or dead). Different
  // workers may run at once, on different threads; one worker's rounds must not overlap (its
  // publisher is not thread-safe), nor run while Run() does.
  Result<int> RunBatch(size_t worker = 0);

  const RelayCounters& counters() const { return counters_; }

  // Prometheus text: pending rows, oldest pending age, published, failures, dead.
  std::string Metrics();

 private:
  struct BatchOutcome {
    int handled = 0;              // rows published, failed or moved to dead
    bool held_elsewhere = false;  // rows were pending, but other workers or relays held them all
    bool stale_head = false;      // the rows it took were sent meanwhile by their former holder
  };
  // One claim-publish-mark round, in one database transaction: ClaimRows, ToMessages and the
  // publisher, MarkDeliveries, commit, then UpdateBlocked.
  Result<BatchOutcome> RunBatchOf(size_t worker);

  class HeldAggregates;
  struct PublishedRow;
  // The rows a round took.
  struct Claimed {
    bool nothing_pending = false;      // no pending row in the head, and no retry due
    std::string ids;                   // rows to publish, comma-separated; empty: none granted
    std::vector<std::string> retried;  // blocked aggregates whose failed row is among them
  };
  // Chooses the round's aggregates (the due retries of blocked ones first, then the head's
  // oldest, up to batch_size rows), locks them for the transaction and returns their rows' ids.
  Claimed ClaimRows(pqxx::work& tx, HeldAggregates& held);
  // Asks for the advisory locks of `asked`, each held until `tx` ends so that no other relay or
  // worker touches its aggregate; those granted leave `asked` for `mine` and are counted in
  // in_flight_ (handed back by `held`).
  void LockAggregates(pqxx::work& tx, std::unordered_set<std::string_view>& asked,
                      HeldAggregates& held, std::unordered_set<std::string_view>& mine);
  // The messages of claimed `rows` (in order), and in `batch` what is kept of each.
  static std::vector<OutgoingMessage> ToMessages(const pqxx::result& rows,
                                                 std::vector<PublishedRow>* batch);
  // What the broker's answers did to a round's rows.
  struct Marked {
    size_t done = 0;                                     // acknowledged: marked sent (or deleted)
    size_t dead = 0;                                     // poison rows moved to "dead"
    std::map<std::string, int64_t, std::less<>> failed;  // aggregate -> its first failed row
    bool failed_afresh = false;  // a row failed that was not a blocked one's retry
  };
  // Writes the outcome of each delivery in `tx` (sent, dead, or a failed attempt that blocks
  // its aggregate) and counts the failures.
  Marked MarkDeliveries(pqxx::work& tx, const std::vector<PublishedRow>& batch,
                        const std::vector<Delivery>& results,
                        const std::vector<std::string>& retried);
  // Once the round committed, before its aggregates are handed back: the retried aggregates
  // not failed again are unblocked (their row went, was set aside, or is no longer pending);
  // those with a failed row are blocked until their retry, with a growing backoff.
  void UpdateBlocked(const std::vector<std::string>& retried,
                     const std::map<std::string, int64_t, std::less<>>& failed);
  // Deletes the sent rows older than `retention`, `retention_batch` rows a statement (its own
  // transaction, rows other sessions hold skipped), until a statement deletes fewer or after
  // kRetentionBatchesPerPass statements (worker 0 publishes too: a day's backlog is deleted a
  // pass at a time between its batches). True when more may be left.
  bool DeleteOldSentRows();
  static constexpr int kRetentionBatchesPerPass = 10;
  void RunWorker(size_t worker, const std::atomic<bool>& stop);

  const RelayConfig config_;
  std::vector<std::unique_ptr<KafkaPublisher>> publishers_;
  // Aggregates that a worker of this relay holds (in a transaction not yet ended): the others
  // pass over them when they choose what to lock, instead of asking the database for them.
  // Counted: a worker may be granted an aggregate just before the previous holder's batch
  // has handed it back.
  Mutex in_flight_mu_;
  std::map<std::string, int, std::less<>> in_flight_ GUARDED_BY(in_flight_mu_);
  // Aggregates of this relay's failed rows: `head` is the failed row,
  // the aggregate's oldest pending one, tried again alone at `retry_at`. Other relays on the
  // table learn of the block by their own failure.
  struct Blocked {
    int64_t head = 0;
    std::chrono::steady_clock::time_point retry_at;
    Duration backoff{};
  };
  std::map<std::string, Blocked, std::less<>> blocked_ GUARDED_BY(in_flight_mu_);
  // Worker 0 listens for NOTIFY; it wakes the others, which wait here when idle.
  Mutex wake_mu_;
  std::condition_variable wake_cv_;
  uint64_t wake_generation_ GUARDED_BY(wake_mu_) = 0;
  const Logger& log_;
  pg::PgPool pool_;
  RelayCounters counters_;
};

}  // namespace treaty::outbox
