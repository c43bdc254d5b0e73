#include "coordinator/store/store_clock.h"

#include <cstdlib>
#include <pqxx/pqxx>

#include "common/log.h"
#include "common/pg/pg_pool.h"

namespace treaty::store {
namespace {

const Logger kLog("treatyd");

int64_t MicrosSinceEpoch(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

}  // namespace

StoreClock::StoreClock(std::vector<std::string> urls, Duration connect_timeout, Duration interval)
    : urls_(std::move(urls)), connect_timeout_(connect_timeout), interval_(interval) {}

StoreClock::~StoreClock() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (reader_.joinable()) reader_.join();
}

void StoreClock::Start() {
  reader_ = std::thread([this] { Run(); });
}

core::TimePoint StoreClock::Now() {
  return std::chrono::system_clock::now() + std::chrono::microseconds(offset_us_.load());
}

core::MonoTime StoreClock::Monotonic() { return std::chrono::steady_clock::now(); }

Duration StoreClock::Offset() const {
  return std::chrono::duration_cast<Duration>(std::chrono::microseconds(offset_us_.load()));
}

Status StoreClock::Read() {
  Status first_error = Status::Unavailable("no store configured");
  for (size_t i = 0; i < urls_.size(); ++i) {
    Status s = ReadFrom(urls_[i]);
    if (s.ok()) return s;
    if (i == 0) first_error = s;
  }
  return first_error;
}

Status StoreClock::ReadFrom(const std::string& url) {
  try {
    pqxx::connection conn(pg::WithConnectTimeout(url, connect_timeout_));
    pqxx::nontransaction(conn).exec("SET statement_timeout = 2000");
    // Three readings on the same connection; the one with the shortest round trip (measured on
    // the monotonic clock: a step of the wall clock cannot make it negative) is the most precise.
    int64_t best_rtt = -1, best_offset = 0;
    for (int i = 0; i < 3; ++i) {
      pqxx::nontransaction tx(conn);
      const auto sent = std::chrono::system_clock::now();
      const auto sent_mono = std::chrono::steady_clock::now();
      pqxx::result r = tx.exec("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint");
      const int64_t rtt = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now() - sent_mono)
                              .count();
      const int64_t midpoint = MicrosSinceEpoch(sent) + rtt / 2;
      if (best_rtt < 0 || rtt < best_rtt) {
        best_rtt = rtt;
        best_offset = r[0][0].as<int64_t>() - midpoint;
      }
    }
    const int64_t before = offset_us_.exchange(best_offset);
    // Said once when it becomes large (or changes a lot): an operator should fix the host's clock.
    if (std::llabs(best_offset - before) > 500000 && std::llabs(best_offset) > 500000) {
      kLog.Warn("this host's clock differs from the store's; times follow the store's",
                {{"offset_ms", std::to_string(best_offset / 1000)},
                 {"round_trip_us", std::to_string(best_rtt)}});
    }
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("reading the store's clock: ") + e.what());
  }
}

void StoreClock::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    Status s = Read();
    if (!s.ok()) kLog.Debug("cannot read the store's clock now", {{"error", s.message()}});
    lock.lock();
    wake_.wait_for(lock, interval_, [this] { return stopping_; });
  }
}

}  // namespace treaty::store
