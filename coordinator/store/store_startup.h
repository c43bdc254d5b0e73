#pragma once

// Brings the store up in the background: connects with backoff (`retry`) until it succeeds,
// then migrates the schema. treatyd's HTTP server runs meanwhile, so /healthz answers and
// /readyz says why it is not ready (last_error). The destructor stops the retries and joins the
// startup thread; `store` must outlive this object.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "config/treaty_config.h"
#include "coordinator/store/pg_store.h"

namespace treaty::store {

class StoreStartup {
 public:
  // `on_migrated` runs once, on the startup thread, when the schema is current (before
  // migrated() turns true).
  StoreStartup(PgStore& store, const RetryOptions& retry, std::function<void()> on_migrated);
  ~StoreStartup();
  StoreStartup(const StoreStartup&) = delete;
  StoreStartup& operator=(const StoreStartup&) = delete;

  // True once the schema is current and on_migrated has returned.
  bool migrated() const;
  // Why the last attempt failed; empty before the first failure and once migrated.
  std::string last_error() const;

 private:
  void Run();

  PgStore& store_;
  const RetryOptions retry_;
  std::function<void()> on_migrated_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool migrated_ = false;
  std::string last_error_;
  std::thread thread_;
};

}  // namespace treaty::store
