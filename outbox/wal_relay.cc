#include "outbox/wal_relay.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <optional>
#include <pqxx/pqxx>
#include <thread>

#include "common/protocol/protocol.h"

namespace treaty::outbox {
namespace {

using Clock = std::chrono::steady_clock;

// The server's clock epoch in the replication protocol: 2000-01-01, in microseconds.
int64_t ReplicationNow() {
  constexpr int64_t kUnixTo2000 = 946684800;
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count();
  return us - kUnixTo2000 * 1000000;
}

void SleepUnlessStopped(Duration d, const std::atomic<bool>& stop) {
  auto until = Clock::now() + d;
  while (!stop && Clock::now() < until) {
    std::this_thread::sleep_for(std::min<Duration>(d, std::chrono::milliseconds(20)));
  }
}

// The extra headers of an event (a JSON object) into `m`.
void AddHeaders(const std::string& json, kafka::OutgoingMessage* m) {
  if (json.empty() || json == "{}") return;
  try {
    Poco::JSON::Parser parser;
    auto h = parser.parse(json).extract<Poco::JSON::Object::Ptr>();
    for (const auto& [k, v] : *h) m->headers[k] = v.toString();
  } catch (const std::exception&) {
  }
}

// Events decoded ahead, in batches: while one is in flight, the stream is read on (the server
// keeps decoding) until this many batches wait.
constexpr size_t kReadAhead = 4;

// Status updates go at least this often, so that the server never times the stream out.
constexpr Duration kStatusInterval = std::chrono::seconds(10);

}  // namespace

// One replication connection, closed when destroyed.
class WalRelay::Stream {
 public:
  ~Stream() {
    if (conn_ != nullptr) PQfinish(conn_);
  }
  PGconn* conn_ = nullptr;
  Clock::time_point last_status_{};
  uint64_t last_sent_confirmed_ = 0;

  // Sends a standby status update; false when the connection is gone. Written is reported as
  // what is confirmed: a server that has sent more then asks with a keepalive when it is idle,
  // whose position the relay confirms once nothing of its own is unsettled (so the slot's lag
  // comes back to zero, however much unrelated WAL passed).
  bool SendStatus(uint64_t confirmed) {
    std::string msg = StandbyStatusUpdate(confirmed, confirmed, ReplicationNow());
    if (PQputCopyData(conn_, msg.data(), static_cast<int>(msg.size())) != 1) return false;
    if (PQflush(conn_) != 0) return false;
    last_status_ = Clock::now();
    last_sent_confirmed_ = confirmed;
    return true;
  }
  std::string Error() const { return conn_ != nullptr ? PQerrorMessage(conn_) : "no connection"; }
};

// Publishes one batch at a time on a thread of its own, so that the stream is read and decoded
// while the broker acknowledges the batch before. One batch in flight at most: the next is put
// together only once this one's outcome is known (an aggregate that failed must not have later
// events in flight). `fd()` becomes readable when an outcome is ready.
class WalRelay::Publishing {
 public:
  explicit Publishing(kafka::Publisher& publisher) : publisher_(publisher) {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
      read_fd_ = fds[0];
      write_fd_ = fds[1];
    }
    thread_ = std::thread([this] { Loop(); });
  }
  ~Publishing() {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();  // after the batch in flight, if any
    if (read_fd_ >= 0) ::close(read_fd_);
    if (write_fd_ >= 0) ::close(write_fd_);
  }
  Publishing(const Publishing&) = delete;
  Publishing& operator=(const Publishing&) = delete;

  void Submit(std::vector<kafka::OutgoingMessage> messages) {
    {
      MutexLock lock(mu_);
      job_ = std::move(messages);
      has_job_ = true;
    }
    cv_.notify_all();
  }
  // The submitted batch's deliveries once it is published; nullopt while it is in flight.
  std::optional<std::vector<kafka::Delivery>> TryTake() {
    char buf[16];
    while (read_fd_ >= 0 && ::read(read_fd_, buf, sizeof buf) > 0) {
    }
    MutexLock lock(mu_);
    if (!has_result_) return std::nullopt;
    has_result_ = false;
    return std::move(result_);
  }
  // Waits for the submitted batch's deliveries.
  std::vector<kafka::Delivery> Take() {
    MutexLock lock(mu_);
    cv_.wait(lock.native(), [&]() REQUIRES(mu_) { return has_result_; });
    has_result_ = false;
    return std::move(result_);
  }
  int fd() const { return read_fd_; }

 private:
  void Loop() {
    while (true) {
      std::vector<kafka::OutgoingMessage> job;
      {
        MutexLock lock(mu_);
        cv_.wait(lock.native(), [&]() REQUIRES(mu_) { return stop_ || has_job_; });
        if (!has_job_) return;
        job = std::move(job_);
        has_job_ = false;
      }
      std::vector<kafka::Delivery> result = publisher_.Publish(job);
      {
        MutexLock lock(mu_);
        result_ = std::move(result);
        has_result_ = true;
      }
      cv_.notify_all();
      if (write_fd_ >= 0) (void)!::write(write_fd_, "x", 1);
    }
  }

  kafka::Publisher& publisher_;
  int read_fd_ = -1, write_fd_ = -1;
  Mutex mu_;
  std::condition_variable cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  bool has_job_ GUARDED_BY(mu_) = false;
  std::vector<kafka::OutgoingMessage> job_ GUARDED_BY(mu_);
  bool has_result_ GUARDED_BY(mu_) = false;
  std::vector<kafka::Delivery> result_ GUARDED_BY(mu_);
  std::thread thread_;
};

WalRelay::WalRelay(const RelayConfig& config, std::unique_ptr<kafka::KafkaPublisher> publisher,
                   const Logger& log)
    : config_(config),
      publisher_(std::move(publisher)),
      log_(log),
      pool_(config.database_url, std::chrono::seconds(5), 2),
      decoder_(config.table) {}

WalRelay::~WalRelay() = default;

Status WalRelay::Setup() {
  Result<bool> r = pool_.Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::nontransaction tx(c);
    if (tx.exec_params("SELECT 1 FROM pg_publication WHERE pubname = $1", config_.wal_publication)
            .empty()) {
      // Inserts only: the relay needs nothing else, and the kit deletes what it inserted in
      // the same transaction. Without the table (events as messages only), an empty
      // publication: pgoutput asks for one.
      bool table =
          !tx.exec_params("SELECT 1 FROM pg_class WHERE oid = to_regclass($1)", config_.table)
               .empty();
      try {
        tx.exec("CREATE PUBLICATION " + config_.wal_publication +
                (table ? " FOR TABLE " + config_.table : std::string()) +
                " WITH (publish = 'insert')");
        log_.Info("publication created",
                  {{"publication", config_.wal_publication},
                   {"table", table ? config_.table : "(none: messages only)"}});
      } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() != "42710") throw;  // another relay created it meanwhile
      }
    }
    if (tx.exec_params("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", config_.wal_slot)
            .empty()) {
      try {
        tx.exec_params("SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                       config_.wal_slot);
        log_.Warn("replication slot created: events committed before now are not in it",
                  {{"slot", config_.wal_slot}});
      } catch (const pqxx::sql_error& e) {
        if (e.sqlstate() != "42710") throw;
      }
    }
    return true;
  });
  return r.ok() ? Status::Ok() : r.status();
}

void WalRelay::Run(const std::atomic<bool>& stop) {
  bool set_up = false;
  Duration backoff = config_.retry_initial;
  bool was_standby = false;
  while (!stop) {
    if (!set_up) {
      Status s = Setup();
      if (!s.ok()) {
        log_.Error("cannot set up the publication and slot; retrying",
                   {{"error", s.message()}, {"retry_in", FormatDuration(backoff)}});
        SleepUnlessStopped(backoff, stop);
        backoff = std::min(config_.retry_max, backoff * 2);
        continue;
      }
      set_up = true;
    }
    Status s = StreamOnce(stop);
    if (streaming_) backoff = config_.retry_initial;  // it streamed: a fresh failure
    streaming_ = false;
    if (s.ok()) break;
    if (s.code() == Status::Code::kConflict) {
      if (!was_standby)
        log_.Info("standby: another relay streams the slot", {{"slot", config_.wal_slot}});
      was_standby = true;
      SleepUnlessStopped(config_.wal_standby_retry, stop);
      continue;
    }
    was_standby = false;
    if (s.code() == Status::Code::kNotFound) set_up = false;
    log_.Warn("stream ended; reconnecting",
              {{"error", s.message()}, {"retry_in", FormatDuration(backoff)}});
    SleepUnlessStopped(backoff, stop);
    backoff = std::min(config_.retry_max, backoff * 2);
  }
}

Status WalRelay::StreamOnce(const std::atomic<bool>& stop) {
  Stream stream;
  const char* keys[] = {"dbname", "replication", "connect_timeout", nullptr};
  const char* values[] = {config_.database_url.c_str(), "database", "5", nullptr};
  stream.conn_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (stream.conn_ == nullptr || PQstatus(stream.conn_) != CONNECTION_OK) {
    return Status::Unavailable("cannot connect for replication: " + stream.Error());
  }
  const std::string start = "START_REPLICATION SLOT " + config_.wal_slot +
                            " LOGICAL 0/0 (proto_version '1', publication_names '" +
                            config_.wal_publication + "', messages 'true')";
  {
    PGresult* res = PQexec(stream.conn_, start.c_str());
    const ExecStatusType st = PQresultStatus(res);
    std::string sqlstate;
    if (const char* code = PQresultErrorField(res, PG_DIAG_SQLSTATE)) sqlstate = code;
    std::string error = PQresultErrorMessage(res);
    PQclear(res);
    if (st != PGRES_COPY_BOTH) {
      if (sqlstate == "55006") return Status::Conflict(error);  // the slot is active elsewhere
      if (sqlstate == "42704") return Status::NotFound(error);  // no such slot
      return Status::Unavailable("START_REPLICATION failed: " + error);
    }
  }
  // The server sends again everything after the slot's confirmed position: what this relay
  // held from an earlier session is in it.
  decoder_ = PgOutputDecoder(config_.table);
  in_tx_ = false;
  open_.clear();
  txs_.clear();
  first_tx_ = next_tx_ = 0;
  ready_.clear();
  blocked_.clear();
  held_ = 0;
  held_gauge_ = 0;
  confirmed_ = keepalive_end_ = 0;
  in_flight_.reset();
  // Declared after the connection: a batch in flight ends before the stream closes.
  Publishing publishing(*publisher_);
  streaming_ = true;
  auto next_retention = Clock::now();
  log_.Info("streaming", {{"slot", config_.wal_slot}, {"publication", config_.wal_publication}});

  while (!stop) {
    if (PQconsumeInput(stream.conn_) == 0) {
      return Status::Unavailable("replication connection lost: " + stream.Error());
    }
    // Take what has arrived, up to a batch (and nothing while too many events wait behind
    // failed ones: the stream pauses, the server keeps the WAL).
    bool ended = false;
    while (ready_.size() < kReadAhead * static_cast<size_t>(config_.wal_batch_size) &&
           held_ < static_cast<size_t>(config_.wal_max_held)) {
      char* buf = nullptr;
      int n = PQgetCopyData(stream.conn_, &buf, /*async=*/1);
      if (n == 0) break;
      if (n < 0) {
        ended = true;
        break;
      }
      Status s = OnFrame(std::string_view(buf, static_cast<size_t>(n)), stream);
      PQfreemem(buf);
      if (!s.ok()) return s;
    }
    if (ended) {
      PGresult* res = PQgetResult(stream.conn_);
      std::string error = res != nullptr ? PQresultErrorMessage(res) : stream.Error();
      if (res != nullptr) PQclear(res);
      return Status::Unavailable("the replication stream ended: " + error);
    }
    if (in_flight_) {
      if (auto delivered = publishing.TryTake()) FinishBatch(std::move(*delivered));
    }
    const auto now = Clock::now();
    const bool work =
        !in_flight_ && (!ready_.empty() || HasDueRetry(now)) && StartBatch(publishing);
    // Advance the confirmed position past every transaction settled in full.
    while (!txs_.empty() && txs_.front().outstanding == 0) {
      confirmed_ = std::max(confirmed_, txs_.front().end_lsn);
      txs_.pop_front();
      ++first_tx_;
    }
    if (txs_.empty() && !in_tx_ && ready_.empty() && blocked_.empty() && !in_flight_) {
      // Nothing of ours is unsettled: everything the server has sent is done with.
      confirmed_ = std::max(confirmed_, keepalive_end_);
    }
    if (confirmed_ != stream.last_sent_confirmed_ ||
        Clock::now() - stream.last_status_ >= kStatusInterval) {
      if (!stream.SendStatus(confirmed_)) {
        return Status::Unavailable("cannot send the status update: " + stream.Error());
      }
    }
    if (work) continue;  // read on while it is published
    if (now >= next_retention) {
      DeleteOldRows();
      next_retention = Clock::now() + std::chrono::minutes(1);
    }
    // Idle: wait for the server, the next retry or the next status update (paused: not for
    // the server, whose data waits unread).
    Duration wait = std::chrono::milliseconds(100);
    for (const auto& [k, b] : blocked_) {
      wait = std::min<Duration>(wait, std::chrono::duration_cast<Duration>(
                                          std::max(b.retry_at - now, Clock::duration{})));
    }
    const int ms =
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
    pollfd fds[2] = {{publishing.fd(), POLLIN, 0}, {PQsocket(stream.conn_), POLLIN, 0}};
    const bool paused = held_ >= static_cast<size_t>(config_.wal_max_held) ||
                        ready_.size() >= kReadAhead * static_cast<size_t>(config_.wal_batch_size);
    ::poll(fds, paused ? 1 : 2, ms);
  }
  // Stopped: confirm what was acknowledged and end the stream.
  if (in_flight_) FinishBatch(publishing.Take());
  while (!txs_.empty() && txs_.front().outstanding == 0) {
    confirmed_ = std::max(confirmed_, txs_.front().end_lsn);
    txs_.pop_front();
  }
  stream.SendStatus(confirmed_);
  PQputCopyEnd(stream.conn_, nullptr);
  PQflush(stream.conn_);
  return Status::Ok();
}

Status WalRelay::OnFrame(std::string_view data, Stream& stream) {
  Result<ReplicationFrame> f = ParseReplicationFrame(data);
  if (!f.ok()) return f.status();
  if (f->kind == 'k') {
    keepalive_end_ = std::max(keepalive_end_, f->wal_end);
    if (f->reply_requested && !stream.SendStatus(confirmed_)) {
      return Status::Unavailable("cannot answer the keepalive: " + stream.Error());
    }
    return Status::Ok();
  }
  if (f->kind != 'w') return Status::Ok();
  Result<PgOutputItem> item = decoder_.Decode(f->payload);
  if (!item.ok()) return item.status();
  switch (item->kind) {
    case PgOutputItem::Kind::kBegin:
      in_tx_ = true;
      open_.clear();
      break;
    case PgOutputItem::Kind::kEvent:
      // A row written as already dead (a dead letter of this relay) is not an event.
      if (item->event.status != "pending") break;
      if (item->transactional && in_tx_) {
        open_.push_back(std::move(item->event));
        break;
      }
      // A non-transactional message: a transaction of its own, ending at its position.
      txs_.push_back(TxMark{item->message_lsn, 1});
      ready_.push_back(Event{next_tx_++,
                             item->event.aggregate_type + ":" + item->event.aggregate_id,
                             std::move(item->event)});
      break;
    case PgOutputItem::Kind::kCommit: {
      in_tx_ = false;
      const uint64_t tx = next_tx_++;
      txs_.push_back(TxMark{item->commit_end_lsn, static_cast<int64_t>(open_.size())});
      for (WalEvent& e : open_) {
        std::string aggregate = e.aggregate_type + ":" + e.aggregate_id;
        ready_.push_back(Event{tx, std::move(aggregate), std::move(e)});
      }
      open_.clear();
      break;
    }
    case PgOutputItem::Kind::kOther:
      break;
  }
  return Status::Ok();
}

bool WalRelay::HasDueRetry(Clock::time_point now) const {
  for (const auto& [k, b] : blocked_) {
    if (b.retry_at <= now) return true;
  }
  return false;
}

void WalRelay::Settle(uint64_t tx) { --txs_.at(tx - first_tx_).outstanding; }

bool WalRelay::StartBatch(Publishing& publishing) {
  const auto now = Clock::now();
  std::vector<Event> batch;
  std::map<std::string, Duration, std::less<>> retried;  // aggregate -> its backoff so far
  // Due blocked aggregates first: their events are older than any ready one of theirs.
  for (auto it = blocked_.begin(); it != blocked_.end();) {
    if (it->second.retry_at > now) {
      ++it;
      continue;
    }
    retried[it->first] = it->second.backoff;
    held_ -= it->second.held.size();
    for (Event& e : it->second.held) batch.push_back(std::move(e));
    it = blocked_.erase(it);
  }
  // Then ready events, up to a batch; those of a blocked aggregate join its queue.
  while (!ready_.empty() && batch.size() < static_cast<size_t>(config_.wal_batch_size)) {
    Event e = std::move(ready_.front());
    ready_.pop_front();
    auto b = blocked_.find(e.aggregate);
    if (b != blocked_.end()) {
      b->second.held.push_back(std::move(e));
      ++held_;
      continue;
    }
    batch.push_back(std::move(e));
  }
  held_gauge_ = static_cast<int64_t>(held_);
  if (batch.empty()) return false;

  std::vector<kafka::OutgoingMessage> messages;
  std::vector<size_t> index;  // message -> batch position
  messages.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const WalEvent& w = batch[i].wal;
    if (!w.malformed.empty()) continue;
    kafka::OutgoingMessage m{w.topic, w.key.empty() ? w.aggregate_id : w.key, w.payload, {}};
    AddHeaders(w.headers, &m);
    m.headers[protocol::kEventIdHeader] = w.event_id;
    // The writing transaction's trace context; a traceparent in the event's own headers wins.
    if (!m.headers.count(protocol::kTraceparentHeader)) {
      std::string traceparent = protocol::ValidTraceParent(w.traceparent);
      if (!traceparent.empty()) m.headers[protocol::kTraceparentHeader] = std::move(traceparent);
    }
    m.headers[protocol::kEventTypeHeader] = w.event_type;
    m.ordering = batch[i].aggregate;
    messages.push_back(std::move(m));
    index.push_back(i);
  }
  publishing.Submit(std::move(messages));
  in_flight_ = InFlight{std::move(batch), std::move(index), std::move(retried)};
  return true;
}

void WalRelay::FinishBatch(std::vector<kafka::Delivery> sent) {
  InFlight f = std::move(*in_flight_);
  in_flight_.reset();
  std::vector<Event>& batch = f.batch;
  const auto& retried = f.retried;
  const auto now = Clock::now();
  std::vector<kafka::Delivery> results(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].wal.malformed.empty()) {
      results[i] = kafka::Delivery{false, true, batch[i].wal.malformed};
    }
  }
  for (size_t j = 0; j < sent.size() && j < f.index.size(); ++j) {
    results[f.index[j]] = std::move(sent[j]);
  }

  int64_t done = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    Event& e = batch[i];
    const kafka::Delivery& d = results[i];
    if (d.acked) {
      Settle(e.tx);
      ++done;
      continue;
    }
    auto b = blocked_.find(e.aggregate);
    if (b != blocked_.end()) {
      // Behind its aggregate's failed (or set aside) event of this batch: it waits with it.
      b->second.held.push_back(std::move(e));
      ++held_;
      continue;
    }
    ++failures_;
    if (d.permanent && config_.poison == "dead_letter" && DeadLetter(e, d.error)) {
      Settle(e.tx);
      ++dead_;
      log_.Error("poison event moved to dead", {{"event_id", e.wal.event_id}, {"error", d.error}});
      // Its aggregate's later events of this batch were held back: they go at the next round.
      blocked_[e.aggregate] = Blocked{{}, now, Duration{}};
      continue;
    }
    auto prev = retried.find(e.aggregate);
    const Duration backoff = prev == retried.end() || prev->second.count() == 0
                                 ? config_.retry_initial
                                 : std::min(config_.retry_max, prev->second * 2);
    if (d.permanent) {
      log_.Error("poison event blocks its aggregate (poison: block)",
                 {{"event_id", e.wal.event_id}, {"aggregate", e.aggregate}, {"error", d.error}});
    } else if (prev == retried.end()) {
      log_.Warn("an event failed; its aggregate waits for it",
                {{"event_id", e.wal.event_id}, {"aggregate", e.aggregate}, {"error", d.error}});
    }
    Blocked& nb = blocked_[e.aggregate];
    nb.retry_at = now + backoff;
    nb.backoff = backoff;
    nb.held.push_back(std::move(e));
    ++held_;
  }
  // A set-aside aggregate with nothing behind it is not blocked.
  for (auto it = blocked_.begin(); it != blocked_.end();) {
    it = it->second.held.empty() ? blocked_.erase(it) : std::next(it);
  }
  held_gauge_ = static_cast<int64_t>(held_);
  published_ += done;
}

bool WalRelay::DeadLetter(const Event& e, const std::string& error) {
  const std::string& t = config_.table;
  Result<bool> r = pool_.Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::work tx(c);
    // Inserted as dead (the relay skips it in the stream), or, when the application's row is
    // still there, updated.
    tx.exec_params("INSERT INTO " + t +
                       " (event_id, aggregate_type, aggregate_id, event_type, topic, key, payload, "
                       "headers, status, attempts, last_error) VALUES ($1, $2, $3, $4, $5, "
                       "NULLIF($6, ''), $7::jsonb, $8::jsonb, 'dead', 1, $9) "
                       "ON CONFLICT (event_id) DO UPDATE SET status = 'dead', attempts = " +
                       t + ".attempts + 1, last_error = EXCLUDED.last_error",
                   e.wal.event_id, e.wal.aggregate_type, e.wal.aggregate_id, e.wal.event_type,
                   e.wal.topic, e.wal.key, e.wal.malformed.empty() ? e.wal.payload : "{}",
                   e.wal.malformed.empty() ? e.wal.headers : "{}", error);
    tx.commit();
    return true;
  });
  if (!r.ok()) {
    log_.Error("cannot write the dead letter; the aggregate stays blocked",
               {{"event_id", e.wal.event_id}, {"error", r.status().message()}});
  }
  return r.ok();
}

void WalRelay::DeleteOldRows() {
  // The rows are never marked in this mode: the WAL holds what the relay needs, so rows
  // older than the retention go whatever their status (but dead letters, kept for a person).
  pool_.Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::work tx(c);
    if (tx.exec_params("SELECT 1 FROM pg_class WHERE oid = to_regclass($1)", config_.table)
            .empty()) {
      return true;
    }
    tx.exec_params("DELETE FROM " + config_.table +
                       " WHERE status <> 'dead' AND created_at < now() - ($1::bigint * interval "
                       "'1 millisecond')",
                   static_cast<int64_t>(config_.retention.count()));
    tx.commit();
    return true;
  });
}

std::string WalRelay::Metrics() {
  auto slot = pool_.Run<std::pair<int64_t, int64_t>>(
      [&](pqxx::connection& c) -> Result<std::pair<int64_t, int64_t>> {
        pqxx::read_transaction tx(c);
        pqxx::result r = tx.exec_params(
            "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)"
            "::bigint, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint "
            "FROM pg_replication_slots WHERE slot_name = $1",
            config_.wal_slot);
        if (r.empty()) return Status::NotFound("no slot");
        return std::pair<int64_t, int64_t>{r[0][0].as<int64_t>(), r[0][1].as<int64_t>()};
      });
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, const std::string& v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + v + "\n";
  };
  metric("treaty_relay_wal_streaming", "gauge",
         "1 when this relay streams the slot, 0 when it waits as a standby.",
         streaming_ ? "1" : "0");
  if (slot.ok()) {
    metric("treaty_relay_wal_lag_bytes", "gauge",
           "WAL written since the slot's confirmed position (events not yet confirmed).",
           std::to_string(slot->first));
    metric("treaty_relay_wal_retained_bytes", "gauge",
           "WAL the server keeps for the slot (since its restart position).",
           std::to_string(slot->second));
  }
  metric("treaty_relay_wal_held_events", "gauge",
         "Events waiting in memory behind a failed event of their aggregate.",
         std::to_string(held_gauge_.load()));
  metric("treaty_relay_published_total", "counter", "Events published and acknowledged.",
         std::to_string(published_.load()));
  metric("treaty_relay_failures_total", "counter", "Events whose publishing failed.",
         std::to_string(failures_.load()));
  metric("treaty_relay_dead_total", "counter", "Poison events moved to dead.",
         std::to_string(dead_.load()));
  return out;
}

}  // namespace treaty::outbox
