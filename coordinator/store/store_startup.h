#pragma once

// Brings the store (or one shard of it) up in the background: calls `bring_up` (connect and
// migrate the schema, check the slot map) with backoff (`retry`) until it succeeds. treatyd's
// HTTP server runs meanwhile, so /healthz answers and /readyz says why it is not ready
// (last_error). An InvalidArgument from `bring_up` is not retried: the config is wrong, and
// `on_refused` is told (treatyd then stops). The destructor stops the retries and joins the
// startup thread.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "config/treaty_config.h"

namespace treaty::store {

class StoreStartup {
 public:
  // `bring_up` returns how many migrations it applied. `on_migrated` runs once, on the startup
  // thread, when it has succeeded (before migrated() turns true).
  StoreStartup(std::function<Result<int>()> bring_up, const RetryOptions& retry,
               std::function<void()> on_migrated, std::function<void(const Status&)> on_refused);
  ~StoreStartup();
  StoreStartup(const StoreStartup&) = delete;
  StoreStartup& operator=(const StoreStartup&) = delete;

  // True once the schema is current and on_migrated has returned.
  bool migrated() const;
  // Why the last attempt failed; empty before the first failure and once migrated.
  std::string last_error() const;

 private:
  void Run();

  std::function<Result<int>()> bring_up_;
  const RetryOptions retry_;
  std::function<void()> on_migrated_;
  std::function<void(const Status&)> on_refused_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool migrated_ = false;
  std::string last_error_;
  std::thread thread_;
};

}  // namespace treaty::store
