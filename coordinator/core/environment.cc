#include "coordinator/core/environment.h"

#include <mutex>
#include <random>

#include "coordinator/core/branch_transport.h"

namespace treaty::core {
namespace {

class RealClock : public Clock {
 public:
  TimePoint Now() override { return std::chrono::system_clock::now(); }
  MonoTime Monotonic() override { return std::chrono::steady_clock::now(); }
};

class RandomIds : public IdGenerator {
 public:
  RandomIds() : rng_(std::random_device{}()) {}
  std::string NewGid() override {
    static const char kHex[] = "0123456789abcdef";
    std::lock_guard<std::mutex> lock(mu_);
    std::string id;
    for (int i = 0; i < 2; ++i) {
      uint64_t v = rng_();
      for (int j = 0; j < 16; ++j) id += kHex[(v >> (4 * j)) & 0xf];
    }
    return id;
  }
  double Random01() override {
    std::lock_guard<std::mutex> lock(mu_);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  }

 private:
  std::mutex mu_;
  std::mt19937_64 rng_;
};

class NoCrash : public CrashPoints {
 public:
  void Reach(std::string_view) override {}
};

}  // namespace

Clock& SystemClock() {
  static RealClock clock;
  return clock;
}

IdGenerator& RandomIdGenerator() {
  static RandomIds ids;
  return ids;
}

CrashPoints& NoCrashPoints() {
  static NoCrash none;
  return none;
}

BranchReply::Outcome ClassifyHttpStatus(int http_status) {
  if (http_status >= 200 && http_status < 300) return BranchReply::Outcome::kDone;
  if (http_status == 409) return BranchReply::Outcome::kRefused;
  return BranchReply::Outcome::kUnknown;
}

}  // namespace treaty::core
