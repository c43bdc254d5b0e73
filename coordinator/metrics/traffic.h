#pragma once

// The last minutes of treatyd's traffic, second by second, for the console's strip
// (GET /v1/stats/traffic): transactions finished per second by outcome, branch calls per second
// (and how many got no success), and the p99 of the calls' durations. A fixed ring of kSeconds
// buckets, each with a fixed latency histogram: the memory is the same whatever the load, and
// nothing in it names a transaction, a branch or a URL. Fed by TreatyMetrics, from the same
// driver events as the Prometheus counters. Thread-safe.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "common/thread_annotations.h"

namespace treaty::metrics {

class Traffic {
 public:
  static constexpr int kSeconds = 300;
  using Clock = std::function<std::chrono::system_clock::time_point()>;

  explicit Traffic(Clock now = [] { return std::chrono::system_clock::now(); });

  void OnFinished(bool committed);
  // One branch call (or a message's delivery) that took `took`; `succeeded` when it was done.
  void OnCall(std::chrono::microseconds took, bool succeeded);

  // The last kSeconds seconds up to now, oldest first, as JSON:
  //   {"interval_seconds":1,"end":"<ISO time of the last second>","seconds":300,
  //    "committed":[...],"aborted":[...],"calls":[...],"failed_calls":[...],
  //    "call_p99_ms":[... null for a second without calls]}
  std::string Json();

  // The p99 of the calls counted in `bins` (a bucket's histogram), in milliseconds: the upper
  // bound of the bin it falls in; a negative number when there were none.
  static constexpr int kBins = 32;
  static double P99Ms(const std::array<uint32_t, kBins>& bins);
  // The bin of a call that took `took`: bin i holds calls up to 0.1 ms * 1.5^i (the last, more).
  static int BinOf(std::chrono::microseconds took);
  static double BinUpperMs(int bin);

 private:
  struct Bucket {
    int64_t second = -1;  // since the epoch; -1: never used
    uint32_t committed = 0;
    uint32_t aborted = 0;
    uint32_t calls = 0;
    uint32_t failed_calls = 0;
    std::array<uint32_t, kBins> latency{};
  };
  int64_t NowSecond() const;
  // This second's bucket, emptied first if it still holds an older second.
  Bucket& Current() REQUIRES(mu_);

  const Clock now_;
  Mutex mu_;
  std::array<Bucket, kSeconds> ring_ GUARDED_BY(mu_);
};

}  // namespace treaty::metrics
