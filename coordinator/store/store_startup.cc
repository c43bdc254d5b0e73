#include "coordinator/store/store_startup.h"

#include <algorithm>

#include "common/log.h"

namespace treaty::store {
namespace {
const Logger kLog("treatyd");
}  // namespace

StoreStartup::StoreStartup(std::function<Result<int>()> bring_up, const RetryOptions& retry,
                           std::function<void()> on_migrated,
                           std::function<void(const Status&)> on_refused)
    : bring_up_(std::move(bring_up)),
      retry_(retry),
      on_migrated_(std::move(on_migrated)),
      on_refused_(std::move(on_refused)) {
  thread_ = std::thread([this] { Run(); });
}

StoreStartup::~StoreStartup() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool StoreStartup::migrated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return migrated_;
}

std::string StoreStartup::last_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_error_;
}

void StoreStartup::Run() {
  Duration backoff = retry_.initial;
  for (int attempt = 1;; ++attempt) {
    Result<int> applied = bring_up_();
    if (applied.status().code() == Status::Code::kInvalidArgument) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        last_error_ = applied.status().message();
      }
      on_refused_(applied.status());
      return;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (applied.ok()) {
      lock.unlock();
      kLog.Info(*applied ? "store schema migrated" : "store schema up to date",
                {{"migrations_applied", std::to_string(*applied)}});
      on_migrated_();
      lock.lock();
      migrated_ = true;
      last_error_.clear();
      return;
    }
    last_error_ = applied.status().message();
    kLog.Warn("store not available yet; retrying", {{"attempt", std::to_string(attempt)},
                                                    {"error", last_error_},
                                                    {"retry_in", FormatDuration(backoff)}});
    if (cv_.wait_for(lock, backoff, [this] { return stopping_; })) return;
    backoff = std::min<Duration>(
        retry_.max,
        Duration(static_cast<int64_t>(static_cast<double>(backoff.count()) * retry_.multiplier)));
  }
}

}  // namespace treaty::store
