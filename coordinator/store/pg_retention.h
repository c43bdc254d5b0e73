#pragma once

// The retention purge of treatyd's store (docs/recovery.md, "Retention"): finished transactions
// whose last change is older than the history are deleted with their decision log, a bounded
// batch per statement, in the background. libpqxx exceptions stop here: Status values.
//
// What it never deletes: an unfinished transaction (active, prepared, committing, aborting),
// however old; a finished one changed within the history. Ages are taken by the store's clock
// (now() in the statement), never this host's. Several treatyd may purge one store at once:
// each batch locks its rows with SKIP LOCKED, so they take different rows and never wait for
// each other, nor for a drive that holds a row.
//
// Thread-safe. Runs on connections of its own (two: a batch and a scrape at once), never on
// the drives' pool.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/duration.h"
#include "common/status.h"

namespace treaty::pg {
class PgPool;
}

namespace treaty::store {

struct Purged {
  int64_t transactions = 0;
  int64_t decision_log = 0;
};

class PgRetention {
 public:
  PgRetention(const std::string& url, Duration connect_timeout);
  ~PgRetention();

  // One batch, one statement and its own transaction: up to `batch` committed or aborted
  // transactions whose updated_at is before the store's now() - `history`, oldest first, and
  // their decision-log rows.
  Result<Purged> PurgeBatch(Duration history, int batch);

  // How long ago (seconds, by the store's clock) the oldest finished transaction still kept
  // last changed; 0 when none is kept.
  Result<double> OldestFinishedAge();

 private:
  std::unique_ptr<pg::PgPool> pool_;
};

struct RetentionPurgerOptions {
  Duration history{};
  int batch = 1000;
  Duration interval{};
  Duration pause{};  // between two batches of a round
};

// Runs PgRetention::PurgeBatch in a thread of its own: every `interval`, one round of batches,
// `pause` apart, until one comes back short (the backlog is gone) or the purger stops; a failed
// batch ends the round (logged; the next round tries again). Rounds of several treatyd may
// overlap: harmless. The pause bounds the pace at which a backlog is purged (batch rows per
// pause and batch time), and so the share of the store it takes from the hot path.
class RetentionPurger {
 public:
  // `on_purged` (may be empty) is told what each batch deleted (the metrics).
  RetentionPurger(PgRetention& retention, RetentionPurgerOptions options,
                  std::function<void(const Purged&)> on_purged);
  ~RetentionPurger();  // stops

  void Start();  // the first round at once
  void Stop();   // waits for a batch in flight

 private:
  void Run();

  PgRetention& retention_;
  const RetentionPurgerOptions options_;
  std::function<void(const Purged&)> on_purged_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace treaty::store
