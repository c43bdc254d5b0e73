#include "coordinator/store/pg_retention.h"

#include <pqxx/pqxx>

#include "common/log.h"
#include "common/pg/pg_pool.h"

namespace treaty::store {
namespace {

const Logger kLog("retention");

// The statuses a transaction never leaves (state_machine.h): only these are ever purged.
constexpr const char* kFinished = "('committed', 'aborted')";

}  // namespace

PgRetention::PgRetention(const std::string& url, Duration connect_timeout)
    : pool_(std::make_unique<pg::PgPool>(
          url, connect_timeout, 2,
          // A batch waits for no lock (SKIP LOCKED); the timeout bounds anything else, e.g. an
          // index still being built by a migration.
          "SET statement_timeout = '60s'")) {}

PgRetention::~PgRetention() = default;

Result<Purged> PgRetention::PurgeBatch(Duration history, int batch) {
  return pool_->Run<Purged>([&](pqxx::connection& c) -> Result<Purged> {
    pqxx::nontransaction w(c);  // one statement: its own transaction
    // The victims are picked and locked first, oldest first through
    // transactions_finished_by_update (migration 7), skipping rows any other session holds
    // (another treatyd's batch, a client reading with a lock). The delete checks the status
    // again: a finished status never changes, but the guard costs nothing and is the contract.
    pqxx::result r = w.exec_params(
        std::string("WITH victims AS (SELECT gid FROM treaty.transactions WHERE status IN ") +
            kFinished +
            " AND updated_at < now() - $1::bigint * interval '1 millisecond' "
            "ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED), "
            "gone AS (DELETE FROM treaty.transactions t USING victims v WHERE t.gid = v.gid "
            "AND t.status IN " +
            kFinished +
            " RETURNING t.gid), "
            "log AS (DELETE FROM treaty.decision_log d USING gone g WHERE d.gid = g.gid "
            "RETURNING 1) "
            "SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM log)",
        static_cast<int64_t>(history.count()), batch);
    return Purged{r[0][0].as<int64_t>(), r[0][1].as<int64_t>()};
  });
}

Result<double> PgRetention::OldestFinishedAge() {
  return pool_->Run<double>([&](pqxx::connection& c) -> Result<double> {
    pqxx::nontransaction w(c);
    pqxx::result r =
        w.exec(std::string("SELECT coalesce(extract(epoch FROM now() - min(updated_at)), 0) FROM "
                           "treaty.transactions WHERE status IN ") +
               kFinished);
    return r[0][0].as<double>();
  });
}

RetentionPurger::RetentionPurger(PgRetention& retention, RetentionPurgerOptions options,
                                 std::function<void(const Purged&)> on_purged)
    : retention_(retention), options_(options), on_purged_(std::move(on_purged)) {}

RetentionPurger::~RetentionPurger() { Stop(); }

void RetentionPurger::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Run(); });
}

void RetentionPurger::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RetentionPurger::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    Purged round;
    for (;;) {
      Result<Purged> p = retention_.PurgeBatch(options_.history, options_.batch);
      if (!p.ok()) {
        kLog.Warn("purge batch failed; the next round tries again",
                  {{"error", p.status().message()}});
        break;
      }
      if (on_purged_ && (p->transactions > 0 || p->decision_log > 0)) on_purged_(*p);
      round.transactions += p->transactions;
      round.decision_log += p->decision_log;
      // A short batch: nothing older is left (or the rest is locked by another purger).
      if (p->transactions < options_.batch) break;
      std::unique_lock<std::mutex> pause(mu_);
      if (wake_.wait_for(pause, options_.pause, [this] { return stopping_; })) break;
    }
    if (round.transactions > 0) {
      kLog.Info("purged finished transactions past the history",
                {{"transactions", std::to_string(round.transactions)},
                 {"decision_log", std::to_string(round.decision_log)},
                 {"history", FormatDuration(options_.history)}});
    }
    lock.lock();
    wake_.wait_for(lock, options_.interval, [this] { return stopping_; });
  }
}

}  // namespace treaty::store
