#include "coordinator/metrics/traffic.h"

#include <cmath>
#include <cstdio>
#include <ctime>

namespace treaty::metrics {

Traffic::Traffic(Clock now) : now_(std::move(now)) {}

int64_t Traffic::NowSecond() const {
  return std::chrono::duration_cast<std::chrono::seconds>(now_().time_since_epoch()).count();
}

Traffic::Bucket& Traffic::Current() {
  const int64_t s = NowSecond();
  Bucket& b = ring_[static_cast<size_t>(((s % kSeconds) + kSeconds) % kSeconds)];
  if (b.second != s) {
    b = Bucket{};
    b.second = s;
  }
  return b;
}

void Traffic::OnFinished(bool committed) {
  MutexLock lock(mu_);
  Bucket& b = Current();
  ++(committed ? b.committed : b.aborted);
}

int Traffic::BinOf(std::chrono::microseconds took) {
  double upper_us = 100;
  for (int i = 0; i < kBins - 1; ++i, upper_us *= 1.5) {
    if (static_cast<double>(took.count()) <= upper_us) return i;
  }
  return kBins - 1;
}

double Traffic::BinUpperMs(int bin) { return 0.1 * std::pow(1.5, bin); }

void Traffic::OnCall(std::chrono::microseconds took, bool succeeded) {
  const int bin = BinOf(took);
  MutexLock lock(mu_);
  Bucket& b = Current();
  ++b.calls;
  if (!succeeded) ++b.failed_calls;
  ++b.latency[static_cast<size_t>(bin)];
}

double Traffic::P99Ms(const std::array<uint32_t, kBins>& bins) {
  uint64_t total = 0;
  for (uint32_t n : bins) total += n;
  if (total == 0) return -1;
  // The smallest bin with at least 99% of the calls at or below it.
  const uint64_t rank = (total * 99 + 99) / 100;
  uint64_t seen = 0;
  for (int i = 0; i < kBins; ++i) {
    seen += bins[static_cast<size_t>(i)];
    if (seen >= rank) return BinUpperMs(i);
  }
  return BinUpperMs(kBins - 1);
}

std::string Traffic::Json() {
  const int64_t end = NowSecond();
  std::string committed, aborted, calls, failed, p99;
  {
    MutexLock lock(mu_);
    for (int64_t s = end - kSeconds + 1; s <= end; ++s) {
      const Bucket& b = ring_[static_cast<size_t>(((s % kSeconds) + kSeconds) % kSeconds)];
      const bool live = b.second == s;
      const char* sep = s == end - kSeconds + 1 ? "" : ",";
      committed += sep + std::to_string(live ? b.committed : 0);
      aborted += sep + std::to_string(live ? b.aborted : 0);
      calls += sep + std::to_string(live ? b.calls : 0);
      failed += sep + std::to_string(live ? b.failed_calls : 0);
      const double ms = live ? P99Ms(b.latency) : -1;
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.4g", ms);
      p99 += sep + (ms < 0 ? std::string("null") : std::string(buf));
    }
  }
  std::time_t t = static_cast<std::time_t>(end);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char iso[32];
  std::strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(R"({"interval_seconds":1,"end":")") + iso + R"(","seconds":)" +
         std::to_string(kSeconds) + R"(,"committed":[)" + committed + R"(],"aborted":[)" + aborted +
         R"(],"calls":[)" + calls + R"(],"failed_calls":[)" + failed + R"(],"call_p99_ms":[)" +
         p99 + "]}";
}

}  // namespace treaty::metrics
