#include "outbox/relay.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <algorithm>
#include <pqxx/pqxx>
#include <set>
#include <string_view>
#include <thread>
#include <unordered_set>

#include "common/protocol/protocol.h"

namespace treaty::outbox {
namespace {

// At most this many aggregates blocked at once: each is a term of every batch's head query
// (compared with each row it reads) and a retry of its own. So many failing at once is a
// broker-wide fault (the broker down), not one aggregate's; the aggregates that fail beyond
// it are retried with their batch, as any row, after the worker's backoff.
constexpr size_t kMaxBlocked = 1000;

std::string IdList(const std::vector<int64_t>& ids) {
  std::string out;
  for (int64_t id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
  return out;
}

// Sleeps for `d`, in slices short enough that a stop request is seen.
void SleepUnlessStopped(Duration d, const std::atomic<bool>& stop) {
  auto until = std::chrono::steady_clock::now() + d;
  while (!stop && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::min<Duration>(d, std::chrono::milliseconds(20)));
  }
}

class WakeOnNotify : public pqxx::notification_receiver {
 public:
  explicit WakeOnNotify(pqxx::connection_base& c)
      : pqxx::notification_receiver(c, "treaty_outbox") {}
  void operator()(const std::string&, int) override {}
};

}  // namespace

OutboxRelay::OutboxRelay(const RelayConfig& config,
                         std::vector<std::unique_ptr<KafkaPublisher>> publishers, const Logger& log)
    : config_(config),
      publishers_(std::move(publishers)),
      log_(log),
      // Every statement of a batch reads an index's head or looks rows up by id. Planned from
      // the statistics of a table just filled (or never analyzed), the head of the pending
      // index was read as a bitmap of every pending row and sorted, at each batch. READ
      // COMMITTED whatever the server's default: a batch re-reads its rows after taking their
      // aggregates' locks and must see what the previous holder committed. A session per
      // worker, and one for /metrics.
      pool_(config.database_url, std::chrono::seconds(5), static_cast<int>(publishers_.size()) + 1,
            "SET enable_seqscan = off; SET enable_bitmapscan = off; "
            "SET default_transaction_isolation = 'read committed'") {}

Result<int> OutboxRelay::RunBatch(size_t worker) {
  if (worker >= publishers_.size()) {
    return Status::InvalidArgument("no worker " + std::to_string(worker) + " (there are " +
                                   std::to_string(publishers_.size()) + ")");
  }
  Result<BatchOutcome> outcome = RunBatchOf(worker);
  if (!outcome.ok()) return outcome.status();
  return outcome->handled;
}

// The aggregates a batch holds in in_flight_. Declared before the batch's transaction, so that
// they are handed back to the other workers only once the transaction (and its advisory locks)
// has ended.
class OutboxRelay::HeldAggregates {
 public:
  explicit HeldAggregates(OutboxRelay& relay) : relay_(relay) {}
  ~HeldAggregates() {
    MutexLock lock(relay_.in_flight_mu_);
    for (const std::string& k : keys_) {
      auto it = relay_.in_flight_.find(k);
      if (it != relay_.in_flight_.end() && --it->second == 0) relay_.in_flight_.erase(it);
    }
  }
  HeldAggregates(const HeldAggregates&) = delete;
  HeldAggregates& operator=(const HeldAggregates&) = delete;

  // Records `key`, just counted into in_flight_ (under in_flight_mu_), for handing back.
  void Add(std::string_view key) { keys_.emplace_back(key); }

 private:
  OutboxRelay& relay_;
  std::vector<std::string> keys_;
};

// What a batch keeps of a row after handing its message to the publisher.
struct OutboxRelay::PublishedRow {
  int64_t id;
  std::string event_id;
  std::string aggregate_key;
};

Result<OutboxRelay::BatchOutcome> OutboxRelay::RunBatchOf(size_t worker) {
  KafkaPublisher& publisher = *publishers_.at(worker);
  return pool_.Run<BatchOutcome>([&](pqxx::connection& c) -> Result<BatchOutcome> {
    HeldAggregates held(*this);
    pqxx::work tx(c);
    Claimed claimed = ClaimRows(tx, held);
    if (claimed.nothing_pending) {
      tx.commit();
      return BatchOutcome{};
    }
    if (claimed.ids.empty()) {
      tx.commit();
      return BatchOutcome{.handled = 0, .held_elsewhere = true};
    }
    // Ids as one array parameter: a list of 500 literals was parsed and planned at each batch.
    pqxx::result rows = tx.exec_params(
        "SELECT id, event_id, aggregate_key, topic, coalesce(key, aggregate_id), payload::text, "
        "headers::text, event_type FROM " +
            config_.table + " WHERE id = ANY($1::bigint[]) AND status = 'pending' ORDER BY id",
        "{" + claimed.ids + "}");
    if (rows.empty()) {
      // Every one was sent by the worker or relay that held its aggregate when the head was
      // read: the head is stale, read it again.
      tx.commit();
      UpdateBlocked(claimed.retried, {});
      return BatchOutcome{.handled = 0, .stale_head = true};
    }
    std::vector<PublishedRow> batch;
    std::vector<Delivery> results = publisher.Publish(ToMessages(rows, &batch));
    Marked marked = MarkDeliveries(tx, batch, results, claimed.retried);
    tx.commit();
    UpdateBlocked(claimed.retried, marked.failed);
    counters_.published += static_cast<int64_t>(marked.done);
    counters_.dead += static_cast<int64_t>(marked.dead);
    if (marked.failed_afresh && marked.done == 0 && marked.dead == 0) {
      // No progress at all: back off before trying again. (A blocked aggregate's retry failing
      // again is no reason to: its own backoff spaces its retries, and the worker waits for new
      // rows as usual.)
      std::string why;
      for (const Delivery& d : results) {
        if (!d.acked && !d.error.empty()) {
          why = d.error;
          break;
        }
      }
      return Status::Unavailable(std::to_string(marked.failed.size()) +
                                 " aggregates could not be published: " + why);
    }
    // Rows of blocked aggregates stay pending; with progress elsewhere, go on at once.
    return BatchOutcome{.handled = static_cast<int>(marked.done + marked.dead)};
  });
}

OutboxRelay::Claimed OutboxRelay::ClaimRows(pqxx::work& tx, HeldAggregates& held) {
  // Blocked aggregates (a row of theirs failed) are left out of the head, however many rows
  // they have waiting: otherwise one aggregate's backlog behind a poison row fills the head
  // and no other aggregate is ever chosen. Those due for a retry (and not held by another
  // worker) have their failed row, their oldest pending one, tried again alone.
  std::string blocked_keys;                              // quoted, for the head's query
  std::vector<std::pair<std::string, int64_t>> retries;  // aggregate, its failed row
  {
    const auto now = std::chrono::steady_clock::now();
    MutexLock lock(in_flight_mu_);
    for (const auto& [k, b] : blocked_) {
      blocked_keys += (blocked_keys.empty() ? "" : ",") + tx.quote(k);
      if (b.retry_at <= now && !in_flight_.count(k) &&
          static_cast<int64_t>(retries.size()) < config_.batch_size) {
        retries.emplace_back(k, b.head);
      }
    }
  }
  // The head of the pending index: the oldest pending rows (an index scan that stops after
  // the limit, whatever the backlog; it steps over the blocked aggregates' rows older than
  // that). Deep enough to find a batch beside the other workers'.
  pqxx::result head = tx.exec_params(
      "SELECT id, aggregate_key FROM " + config_.table + " WHERE status = 'pending'" +
          (blocked_keys.empty()
               ? std::string()
               : " AND aggregate_key <> ALL(ARRAY[" + blocked_keys + "]::text[])") +
          " ORDER BY id LIMIT $1",
      config_.batch_size * static_cast<int64_t>(publishers_.size()));
  Claimed claimed;
  if (head.empty() && retries.empty()) {
    claimed.nothing_pending = true;
    return claimed;
  }
  // Views into `head` and `retries`, which outlive them.
  std::unordered_set<std::string_view> mine;
  if (!retries.empty()) {
    std::unordered_set<std::string_view> asked;
    for (const auto& [k, id] : retries) asked.insert(k);
    LockAggregates(tx, asked, held, mine);
    for (const auto& [k, id] : retries) {
      if (mine.count(k)) claimed.retried.push_back(k);
    }
  }
  // Aggregates to ask for, oldest first, until those granted cover a batch. Those another
  // worker of this relay holds, or has blocked since the head was read, are passed over
  // without asking; those refused (another relay, or a worker that got there first) are
  // passed over in the next round.
  std::vector<std::string_view> head_keys;
  head_keys.reserve(head.size());
  for (const auto& r : head) head_keys.emplace_back(r[1].c_str(), r[1].size());
  const int64_t room = config_.batch_size - static_cast<int64_t>(claimed.retried.size());
  std::unordered_set<std::string_view> refused;
  // A few rounds at most: with other relays holding much of the head, asking again and again
  // for one or two aggregates costs more than a smaller batch.
  for (int round = 0; round < 4 && !head.empty(); ++round) {
    std::unordered_set<std::string_view> asked;
    {
      int64_t covered = 0;
      MutexLock lock(in_flight_mu_);
      for (std::string_view k : head_keys) {
        if (mine.count(k) || asked.count(k)) {
          ++covered;
        } else if (covered < room && !refused.count(k) && !in_flight_.count(k) &&
                   !blocked_.count(k)) {
          asked.insert(k);
          ++covered;
        }
      }
    }
    if (asked.empty()) break;
    LockAggregates(tx, asked, held, mine);
    refused.merge(asked);
  }
  // Their rows in the head, oldest first, up to a batch (an aggregate's older pending rows
  // are in the head too, so each aggregate's rows here are its oldest), and the retried rows,
  // read again by the caller: one that another relay sent before this one got the aggregate's
  // lock is no longer pending (each statement sees what was committed before it began). The
  // advisory locks are what keep relays apart; row locks would only add a write per row.
  // Selecting rows by aggregate among all pending rows instead let PostgreSQL read and sort the
  // whole backlog for each batch (docs/performance.md, finding 21).
  for (const auto& [k, id] : retries) {
    if (mine.count(k)) claimed.ids += (claimed.ids.empty() ? "" : ",") + std::to_string(id);
  }
  int64_t taken = 0;
  for (size_t i = 0; i < head.size() && taken < room; ++i) {
    if (mine.count(head_keys[i])) {
      claimed.ids += (claimed.ids.empty() ? "" : ",");
      claimed.ids += head[i][0].c_str();
      ++taken;
    }
  }
  return claimed;
}

void OutboxRelay::LockAggregates(pqxx::work& tx, std::unordered_set<std::string_view>& asked,
                                 HeldAggregates& held, std::unordered_set<std::string_view>& mine) {
  std::string keys;
  for (std::string_view k : asked) {
    keys += (keys.empty() ? "" : ",") + tx.quote(std::string(k));
  }
  pqxx::result granted = tx.exec("SELECT k FROM unnest(ARRAY[" + keys +
                                 "]::text[]) AS k "
                                 "WHERE pg_try_advisory_xact_lock(hashtextextended(k, 7463))");
  MutexLock lock(in_flight_mu_);
  for (const auto& r : granted) {
    auto it = asked.find(std::string_view(r[0].c_str(), r[0].size()));
    if (it == asked.end()) continue;  // not asked for: cannot happen
    ++in_flight_[std::string(*it)];
    held.Add(*it);
    mine.insert(*it);
    asked.erase(it);
  }
}

std::vector<OutgoingMessage> OutboxRelay::ToMessages(const pqxx::result& rows,
                                                     std::vector<PublishedRow>* batch) {
  std::vector<OutgoingMessage> messages;
  batch->reserve(rows.size());
  messages.reserve(rows.size());
  for (const auto& r : rows) {
    PublishedRow row{r[0].as<int64_t>(), r[1].as<std::string>(), r[2].as<std::string>()};
    OutgoingMessage m{r[3].as<std::string>(), r[4].as<std::string>(), r[5].as<std::string>(), {}};
    std::string_view headers(r[6].c_str(), r[6].size());
    if (headers != "{}") {  // the default; not worth a parser per row
      try {
        Poco::JSON::Parser parser;
        auto h = parser.parse(std::string(headers)).extract<Poco::JSON::Object::Ptr>();
        for (const auto& [k, v] : *h) m.headers[k] = v.toString();
      } catch (const std::exception&) {
      }
    }
    m.headers[protocol::kEventIdHeader] = row.event_id;
    m.headers[protocol::kEventTypeHeader] = r[7].as<std::string>();
    // A row refused at produce holds back its aggregate's later rows, on any topic.
    m.ordering = row.aggregate_key;
    messages.push_back(std::move(m));
    batch->push_back(std::move(row));
  }
  return messages;
}

OutboxRelay::Marked OutboxRelay::MarkDeliveries(pqxx::work& tx,
                                                const std::vector<PublishedRow>& batch,
                                                const std::vector<Delivery>& results,
                                                const std::vector<std::string>& retried) {
  const std::string& t = config_.table;
  // Every acknowledged row is done, even one behind a failed row of its aggregate (a failure
  // the broker reported after later rows had gone): it is on the topic, and publishing it
  // again would only deliver it twice. The first failure of an aggregate blocks the rest of
  // it.
  Marked marked;
  std::vector<int64_t> done;
  std::set<std::string_view> set_aside;  // aggregates with a row moved to dead here
  for (size_t i = 0; i < batch.size(); ++i) {
    const PublishedRow& row = batch[i];
    const Delivery& d = results[i];
    if (d.acked) {
      done.push_back(row.id);
      continue;
    }
    // Waits behind its aggregate's failed row.
    if (marked.failed.count(row.aggregate_key)) continue;
    // Held back behind a row just moved to dead: it goes in the next batch.
    if (set_aside.count(row.aggregate_key)) continue;
    counters_.failures++;
    if (d.permanent && config_.poison == "dead_letter") {
      ++marked.dead;
      set_aside.insert(row.aggregate_key);
      tx.exec_params("UPDATE " + t +
                         " SET status = 'dead', last_error = $2, attempts = "
                         "attempts + 1 WHERE id = $1",
                     row.id, d.error);
      log_.Error("poison row moved to dead", {{"event_id", row.event_id}, {"error", d.error}});
      continue;
    }
    const bool retry =
        std::find(retried.begin(), retried.end(), row.aggregate_key) != retried.end();
    marked.failed_afresh = marked.failed_afresh || !retry;
    marked.failed.emplace(row.aggregate_key, row.id);
    tx.exec_params("UPDATE " + t + " SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                   row.id, d.error);
    if (d.permanent) {
      log_.Error(
          "poison row blocks its aggregate (poison: block)",
          {{"event_id", row.event_id}, {"aggregate", row.aggregate_key}, {"error", d.error}});
    } else if (!retry) {
      log_.Warn("a row failed; its aggregate waits for it",
                {{"event_id", row.event_id}, {"aggregate", row.aggregate_key}, {"error", d.error}});
    }
  }
  if (!done.empty()) {
    tx.exec_params(config_.after_send == "delete"
                       ? "DELETE FROM " + t + " WHERE id = ANY($1::bigint[])"
                       : "UPDATE " + t +
                             " SET status = 'sent', sent_at = now(), attempts = attempts + 1 "
                             "WHERE id = ANY($1::bigint[])",
                   "{" + IdList(done) + "}");
  }
  marked.done = done.size();
  return marked;
}

void OutboxRelay::UpdateBlocked(const std::vector<std::string>& retried,
                                const std::map<std::string, int64_t, std::less<>>& failed) {
  const auto now = std::chrono::steady_clock::now();
  MutexLock lock(in_flight_mu_);
  for (const std::string& k : retried) {
    auto it = blocked_.find(k);
    if (it != blocked_.end() && !failed.count(k)) blocked_.erase(it);
  }
  for (const auto& [k, id] : failed) {
    if (blocked_.size() >= kMaxBlocked && !blocked_.count(k)) continue;
    auto [it, fresh] = blocked_.try_emplace(k);
    Blocked& b = it->second;
    b.backoff = fresh ? config_.retry_initial : std::min(config_.retry_max, b.backoff * 2);
    b.head = id;
    b.retry_at = now + b.backoff;
  }
}

bool OutboxRelay::DeleteOldSentRows() {
  // One unbounded DELETE over a day of sent rows would hold their locks and grow one
  // transaction for as long as it runs; batches through treaty_outbox_sent (sent_at, only sent
  // rows) keep each statement short. Pending and dead rows are never touched.
  const std::string t = config_.table;
  for (int pass = 0; pass < kRetentionBatchesPerPass; ++pass) {
    auto deleted = pool_.Run<int64_t>([&](pqxx::connection& c) -> Result<int64_t> {
      pqxx::nontransaction w(c);  // one statement: its own transaction
      pqxx::result r =
          w.exec_params("WITH gone AS (DELETE FROM " + t + " WHERE id IN (SELECT id FROM " + t +
                            " WHERE status = 'sent' AND sent_at < now() - ($1::bigint * interval "
                            "'1 millisecond') ORDER BY sent_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
                            "AND status = 'sent' RETURNING 1) SELECT count(*) FROM gone",
                        static_cast<int64_t>(config_.retention.count()), config_.retention_batch);
      return r[0][0].as<int64_t>();
    });
    if (!deleted.ok()) {
      log_.Warn("retention: deleting sent rows failed; tried again in a minute",
                {{"error", deleted.status().message()}});
      return false;
    }
    counters_.purged += *deleted;
    if (*deleted < config_.retention_batch) return false;
  }
  return true;
}

void OutboxRelay::Run(const std::atomic<bool>& stop) {
  if (publishers_.empty()) {
    log_.Error("no workers: nothing to run", {});
    return;
  }
  std::vector<std::thread> others;
  for (size_t w = 1; w < publishers_.size(); ++w) {
    try {
      others.emplace_back([this, w, &stop] { RunWorker(w, stop); });
    } catch (const std::exception& e) {
      // Out of threads (std::system_error) or memory: fewer workers still relay every row (a
      // worker's aggregates are not its own; any worker takes any aggregate), just less at once.
      log_.Error("a worker did not start; relaying with fewer",
                 {{"error", e.what()}, {"workers", std::to_string(others.size() + 1)}});
      break;
    }
  }
  RunWorker(0, stop);
  {
    // The others may be waiting for worker 0's wake-up.
    MutexLock lock(wake_mu_);
    ++wake_generation_;
  }
  wake_cv_.notify_all();
  for (std::thread& t : others) t.join();
}

void OutboxRelay::RunWorker(size_t worker, const std::atomic<bool>& stop) {
  std::unique_ptr<pqxx::connection> listen;
  std::unique_ptr<WakeOnNotify> wake;
  Duration backoff = config_.retry_initial;
  const Duration first_look_again =
      std::min<Duration>(config_.poll_interval, std::chrono::milliseconds(20));
  Duration look_again = first_look_again;
  auto next_retention = std::chrono::steady_clock::now();
  while (!stop) {
    if (worker == 0 && std::chrono::steady_clock::now() >= next_retention) {
      const bool more = DeleteOldSentRows();
      next_retention = std::chrono::steady_clock::now() +
                       (more ? std::chrono::milliseconds(0) : std::chrono::minutes(1));
    }
    Result<BatchOutcome> outcome = RunBatchOf(worker);
    if (!outcome.ok()) {
      log_.Warn("batch failed; retrying",
                {{"error", outcome.status().message()}, {"retry_in", FormatDuration(backoff)}});
      SleepUnlessStopped(backoff, stop);
      backoff = std::min(config_.retry_max, backoff * 2);
      continue;
    }
    backoff = config_.retry_initial;
    if (outcome->handled > 0) look_again = first_look_again;
    if (outcome->handled > 0 || outcome->stale_head) continue;  // more may be waiting
    if (outcome->held_elsewhere) {
      // Pending rows whose aggregates other workers or relays hold: they usually end their
      // batches in milliseconds, and a commit of theirs sends no NOTIFY, so look again soon;
      // less and less often (up to the poll interval) while they keep holding them (a relay
      // whose broker is down holds its batch up to the delivery timeout).
      SleepUnlessStopped(look_again, stop);
      look_again = std::min<Duration>(config_.poll_interval, look_again * 2);
      continue;
    }
    // Nothing pending: sleep until a writer's NOTIFY or the poll interval. Worker 0 listens
    // and wakes the others; they wait for it, or for the poll interval.
    if (worker != 0) {
      MutexLock lock(wake_mu_);
      const uint64_t seen = wake_generation_;
      wake_cv_.wait_for(lock.native(), config_.poll_interval,
                        [&]() REQUIRES(wake_mu_) { return stop || wake_generation_ != seen; });
      continue;
    }
    try {
      if (!listen) {
        listen = std::make_unique<pqxx::connection>(
            pg::WithConnectTimeout(config_.database_url, std::chrono::seconds(5)));
        wake = std::make_unique<WakeOnNotify>(*listen);
      }
      auto ms = config_.poll_interval.count();
      if (listen->await_notification(ms / 1000, (ms % 1000) * 1000) > 0) {
        {
          MutexLock lock(wake_mu_);
          ++wake_generation_;
        }
        wake_cv_.notify_all();
      }
    } catch (const std::exception& e) {
      wake.reset();
      listen.reset();
      std::this_thread::sleep_for(config_.poll_interval);
    }
  }
}

std::string OutboxRelay::Metrics() {
  double oldest_sent = 0;
  auto stats = pool_.Run<std::pair<int64_t, double>>(
      [&](pqxx::connection& c) -> Result<std::pair<int64_t, double>> {
        pqxx::read_transaction tx(c);
        pqxx::result r = tx.exec(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0), "
            "(SELECT coalesce(extract(epoch FROM now() - min(sent_at)), 0) FROM " +
            config_.table + " WHERE status = 'sent') FROM " + config_.table +
            " WHERE status = 'pending'");
        oldest_sent = r[0][2].as<double>();
        return std::pair<int64_t, double>{r[0][0].as<int64_t>(), r[0][1].as<double>()};
      });
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, const std::string& v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + v + "\n";
  };
  if (stats.ok()) {
    metric("treaty_relay_pending_rows", "gauge", "Outbox rows not yet published.",
           std::to_string(stats->first));
    metric("treaty_relay_oldest_pending_age_seconds", "gauge", "Age of the oldest unpublished row.",
           std::to_string(stats->second));
    metric("treaty_relay_oldest_sent_age_seconds", "gauge",
           "Age of the oldest sent row kept (the retention removes it past `retention`).",
           std::to_string(oldest_sent));
  }
  metric("treaty_relay_published_total", "counter", "Rows published and acknowledged.",
         std::to_string(counters_.published.load()));
  metric("treaty_relay_failures_total", "counter", "Rows whose publishing failed.",
         std::to_string(counters_.failures.load()));
  metric("treaty_relay_dead_total", "counter", "Poison rows moved to dead.",
         std::to_string(counters_.dead.load()));
  metric("treaty_relay_purged_rows_total", "counter", "Sent rows deleted past the retention.",
         std::to_string(counters_.purged.load()));
  return out;
}

}  // namespace treaty::outbox
