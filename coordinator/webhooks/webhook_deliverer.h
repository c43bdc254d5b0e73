#pragma once

// Delivers completion webhooks (docs/api.md): the rows of treaty.webhook_deliveries, which the
// store writes with the state change itself (migration 11), are POSTed to their URL until the
// receiver answers 2xx, with exponential backoff between attempts. Durable: a row is marked
// delivered only after the 2xx, so a treatyd killed at any point leaves it due for the next
// poll (of this or any treatyd); a receiver may thus get an event more than once (the delivery
// id identifies it).
//
// Each attempt claims its rows by pushing their due time past the call's timeout (SKIP LOCKED,
// by the database's clock): treatyd sharing a store never deliver the same row at once.
//
// Signed: Treaty-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.

#include <chrono>
#include <condition_variable>
#include <memory>
#include <string>
#include <thread>

#include "common/duration.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace treaty::pg {
class PgPool;
}

namespace treaty::webhooks {

struct WebhookOptions {
  std::string store_url;
  Duration connect_timeout = std::chrono::seconds(5);
  std::string secret;  // the HMAC key; "" signs with an empty key (documented as not secure)
  Duration poll_interval = std::chrono::milliseconds(200);
  Duration timeout = std::chrono::seconds(5);  // one delivery call
  Duration initial_backoff = std::chrono::milliseconds(500);
  Duration max_backoff = std::chrono::minutes(5);
  int batch = 16;  // rows claimed per poll
};

// "t=<unix>,v1=<hex>": the signature header of `body` sent at `unix_seconds`.
std::string Signature(const std::string& secret, int64_t unix_seconds, const std::string& body);

class WebhookDeliverer {
 public:
  explicit WebhookDeliverer(WebhookOptions options);
  ~WebhookDeliverer();
  WebhookDeliverer(const WebhookDeliverer&) = delete;
  WebhookDeliverer& operator=(const WebhookDeliverer&) = delete;

  // Starts the delivery thread (after the store is migrated).
  void Start();

 private:
  void Run();
  // One poll: claims due rows and delivers them; how many were claimed, or the store's error.
  Result<int> DeliverDue();

  const WebhookOptions options_;
  std::unique_ptr<pg::PgPool> pool_;
  Mutex mu_;
  std::condition_variable cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace treaty::webhooks
