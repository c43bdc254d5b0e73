#include "coordinator/webhooks/webhook_deliverer.h"

#include <Poco/DigestEngine.h>
#include <Poco/Exception.h>
#include <Poco/HMACEngine.h>
#include <Poco/SHA2Engine.h>

#include <algorithm>
#include <optional>
#include <pqxx/pqxx>
#include <random>

#include "common/http/http_client.h"
#include "common/log.h"
#include "common/pg/pg_pool.h"

namespace treaty::webhooks {
namespace {

const Logger kLog("webhooks");

class Sha256Engine : public Poco::SHA2Engine {
 public:
  enum { BLOCK_SIZE = 64, DIGEST_SIZE = 32 };
  Sha256Engine() : Poco::SHA2Engine(Poco::SHA2Engine::SHA_256) {}
};

struct Row {
  int64_t id;
  std::string gid;
  std::string event;
  std::string url;
  std::string body;
  int attempts;
  // The transaction's trace (its body's trace_id) and, while the transaction is kept, its
  // flags and tracestate: each attempt is a call of that trace (a fresh child span).
  std::string trace_id;
  std::string trace_flags;
  std::string tracestate;
};

// 16 random lower-case hex digits, not all zero: the span of one delivery attempt.
std::string NewSpanId() {
  static thread_local std::mt19937_64 random(std::random_device{}());
  static const char kHex[] = "0123456789abcdef";
  uint64_t v = 0;
  while (v == 0) v = random();
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = kHex[v & 0xf];
  return out;
}

// A W3C trace id as the body carries it: 32 lower-case hex digits, not all zero.
bool IsTraceId(const std::string& s) {
  if (s.size() != 32) return false;
  bool nonzero = false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    nonzero = nonzero || c != '0';
  }
  return nonzero;
}

// The answer's status, or the error that kept an answer from coming.
Result<int> Post(const Row& row, const std::string& signature, Duration timeout) {
  http::CallOptions options{.timeout = timeout,
                            .headers = {{"Treaty-Event", row.event},
                                        {"Treaty-Gid", row.gid},
                                        {"Treaty-Delivery-Id", std::to_string(row.id)},
                                        {"Treaty-Signature", signature}}};
  // The delivery is a call of the transaction's trace, as its branch calls are: a child span
  // of the transaction's own (docs/api.md, "Trace context").
  if (IsTraceId(row.trace_id)) {
    options.headers.emplace_back("traceparent",
                                 "00-" + row.trace_id + "-" + NewSpanId() + "-" +
                                     (row.trace_flags.size() == 2 ? row.trace_flags : "01"));
    if (!row.tracestate.empty()) options.headers.emplace_back("tracestate", row.tracestate);
  }
  auto reply = http::HttpCall("POST", row.url, row.body, options);
  if (!reply.ok()) return reply.status();
  return reply->status;
}

}  // namespace

std::string Signature(const std::string& secret, int64_t unix_seconds, const std::string& body) {
  Poco::HMACEngine<Sha256Engine> hmac(secret);
  const std::string t = std::to_string(unix_seconds);
  hmac.update(t + "." + body);
  return "t=" + t + ",v1=" + Poco::DigestEngine::digestToHex(hmac.digest());
}

WebhookDeliverer::WebhookDeliverer(WebhookOptions options)
    : options_(std::move(options)),
      pool_(std::make_unique<pg::PgPool>(options_.store_url, options_.connect_timeout, 2)) {}

WebhookDeliverer::~WebhookDeliverer() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WebhookDeliverer::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { Run(); });
}

void WebhookDeliverer::Run() {
  bool failing = false;
  while (true) {
    {
      MutexLock lock(mu_);
      if (stopping_) return;
    }
    Result<int> claimed = DeliverDue();
    if (!claimed.ok() && !failing) {
      kLog.Warn("cannot read webhook deliveries; will retry",
                {{"error", claimed.status().message()}});
    }
    failing = !claimed.ok();
    // A full batch: more may be due at once.
    if (claimed.ok() && *claimed >= options_.batch) continue;
    MutexLock lock(mu_);
    cv_.wait_for(lock.native(), options_.poll_interval,
                 [this]() REQUIRES(mu_) { return stopping_; });
  }
}

Result<std::pair<int64_t, double>> WebhookDeliverer::Undelivered() {
  return pool_->Run<std::pair<int64_t, double>>(
      [](pqxx::connection& c) -> Result<std::pair<int64_t, double>> {
        pqxx::read_transaction t(c);
        pqxx::result r = t.exec(
            "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 "
            "FROM treaty.webhook_deliveries WHERE delivered_at IS NULL");
        return std::pair<int64_t, double>{r[0][0].as<int64_t>(), r[0][1].as<double>()};
      });
}

std::string RenderUndeliveredMetrics(const std::vector<std::unique_ptr<WebhookDeliverer>>& all) {
  std::optional<std::pair<int64_t, double>> gauges;
  for (const auto& d : all) {
    auto one = d->Undelivered();
    if (!one.ok()) continue;
    if (!gauges) gauges.emplace(0, 0.0);
    gauges->first += one->first;
    gauges->second = std::max(gauges->second, one->second);
  }
  if (!gauges) return "";
  return "# HELP treaty_webhook_undelivered Completion webhooks not yet taken by their receiver.\n"
         "# TYPE treaty_webhook_undelivered gauge\n"
         "treaty_webhook_undelivered " +
         std::to_string(gauges->first) +
         "\n# HELP treaty_webhook_oldest_undelivered_age_seconds How long ago the oldest "
         "undelivered webhook was written.\n"
         "# TYPE treaty_webhook_oldest_undelivered_age_seconds gauge\n"
         "treaty_webhook_oldest_undelivered_age_seconds " +
         std::to_string(gauges->second) + "\n";
}

Result<int> WebhookDeliverer::DeliverDue() {
  const int64_t claim_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout).count() * 2 + 1000;
  auto rows = pool_->Run<std::vector<Row>>([&](pqxx::connection& c) -> Result<std::vector<Row>> {
    pqxx::work w(c);
    // Claimed until past the calls' time: another treatyd (or this one after a restart) takes
    // a row again only once that time is over.
    pqxx::result r = w.exec_params(
        "UPDATE treaty.webhook_deliveries d SET attempts = d.attempts + 1, "
        "next_attempt_at = now() + $2 * interval '1 millisecond' "
        "WHERE d.id IN (SELECT id FROM treaty.webhook_deliveries WHERE delivered_at IS NULL "
        "AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) "
        "RETURNING d.id, d.gid, d.event, d.url, d.body::text, d.attempts, "
        "coalesce(d.body ->> 'trace_id', ''), "
        "coalesce((SELECT t.call_context ->> 'flags' FROM treaty.transactions t "
        "WHERE t.gid = d.gid), ''), "
        "coalesce((SELECT t.call_context ->> 'tracestate' FROM treaty.transactions t "
        "WHERE t.gid = d.gid), '')",
        options_.batch, claim_ms);
    w.commit();
    std::vector<Row> out;
    for (const auto& row : r) {
      out.push_back(Row{row[0].as<int64_t>(), row[1].as<std::string>(), row[2].as<std::string>(),
                        row[3].as<std::string>(), row[4].as<std::string>(), row[5].as<int>(),
                        row[6].as<std::string>(), row[7].as<std::string>(),
                        row[8].as<std::string>()});
    }
    return out;
  });
  if (!rows.ok()) return rows.status();
  for (const Row& row : *rows) {
    const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
    Result<int> status = Post(row, Signature(options_.secret, now_s, row.body), options_.timeout);
    const bool delivered = status.ok() && *status / 100 == 2;
    std::string error;
    if (!status.ok()) {
      error = status.status().message();
    } else if (!delivered) {
      error = "HTTP " + std::to_string(*status);
    }
    // Exponential backoff from the attempts made, capped.
    Duration backoff = options_.initial_backoff;
    for (int i = 1; i < row.attempts && backoff < options_.max_backoff; ++i) backoff *= 2;
    if (backoff > options_.max_backoff) backoff = options_.max_backoff;
    auto recorded = pool_->Run<bool>([&](pqxx::connection& c) -> Result<bool> {
      pqxx::work w(c);
      if (delivered) {
        w.exec_params(
            "UPDATE treaty.webhook_deliveries SET delivered_at = now(), last_error = NULL "
            "WHERE id = $1",
            row.id);
      } else {
        w.exec_params(
            "UPDATE treaty.webhook_deliveries SET last_error = $2, "
            "next_attempt_at = now() + $3 * interval '1 millisecond' WHERE id = $1 "
            "AND delivered_at IS NULL",
            row.id, error, static_cast<int64_t>(backoff.count()));
      }
      w.commit();
      return true;
    });
    if (delivered) {
      kLog.Info(
          "webhook delivered",
          {{"gid", row.gid}, {"event", row.event}, {"attempts", std::to_string(row.attempts)}});
    } else {
      kLog.Warn("webhook not delivered; will retry", {{"gid", row.gid},
                                                      {"event", row.event},
                                                      {"error", error},
                                                      {"attempts", std::to_string(row.attempts)}});
    }
    if (!recorded.ok()) return recorded.status();
  }
  return static_cast<int>(rows->size());
}

}  // namespace treaty::webhooks
