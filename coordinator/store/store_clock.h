#pragma once

// The store's clock, for everything a coordinator stamps and compares with stored times
// (created_at, deadlines, when a retry is due). Several treatyd share one store; if each read
// its own host's clock, one whose clock runs ahead would find transactions due early (abort an
// unsubmitted one before its deadline, retry before the backoff ran out) and stamp times the
// others read as the future. So each treatyd reads PostgreSQL's clock (clock_timestamp()) on a
// connection of its own every `interval`, estimates the offset from the round trip's midpoint,
// and answers Now() as its own clock plus that offset: the database's time, to within half a
// round trip, without a query per call. Leases are decided by the database itself (now() in the
// fenced statements); durations on this host use the monotonic clock, which is not corrected.
//
// Until the first reading (the store unreachable at start) the offset is zero: this host's
// clock. A failed reading keeps the last offset. Thread-safe.
//
// A sharded store (store.shards) has a clock per shard: leases are fenced by each shard's own
// now(), so they never mix; the times stamped and compared here (due times, deadlines) follow
// the first shard that answers, in the configured order. Shards' hosts should keep their clocks
// in step (NTP): a difference between them moves a due time by as much, never a lease.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/duration.h"
#include "common/status.h"
#include "coordinator/core/environment.h"

namespace treaty::store {

class StoreClock : public core::Clock {
 public:
  // Nothing is read until Start(). `urls`: libpq URIs of the store's shards (one for a single
  // store), read in this order until one answers.
  StoreClock(std::vector<std::string> urls, Duration connect_timeout,
             Duration interval = std::chrono::seconds(5));
  ~StoreClock() override;  // stops the reader

  // Starts reading the store's clock in the background, the first time at once.
  void Start();

  core::TimePoint Now() override;
  core::MonoTime Monotonic() override;

  // The store's clock minus this host's, as last read.
  Duration Offset() const;
  // One reading now (the reader calls this); Unavailable when the store cannot be asked.
  Status Read();

 private:
  void Run();

  // One reading from the store at `url`.
  Status ReadFrom(const std::string& url);

  const std::vector<std::string> urls_;
  const Duration connect_timeout_;
  const Duration interval_;
  std::atomic<int64_t> offset_us_{0};
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mu_
  std::thread reader_;
};

}  // namespace treaty::store
