#include "coordinator/webhooks/webhook_deliverer.h"

#include <Poco/DigestEngine.h>
#include <Poco/Exception.h>
#include <Poco/HMACEngine.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/NullStream.h>
#include <Poco/SHA2Engine.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>

#include <pqxx/pqxx>

#include "common/http/tls.h"
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
};

// The answer's status, or the error that kept an answer from coming.
Result<int> Post(const Row& row, const std::string& signature, Duration timeout) {
  try {
    Poco::URI uri(row.url);
    std::unique_ptr<Poco::Net::HTTPClientSession> session;
    if (uri.getScheme() == "https") {
      http::InitTls();
      static const Poco::Net::Context::Ptr kTls = new Poco::Net::Context(
          Poco::Net::Context::TLS_CLIENT_USE, "", "", "", Poco::Net::Context::VERIFY_RELAXED, 9,
          /*loadDefaultCAs=*/true);
      session = std::make_unique<Poco::Net::HTTPSClientSession>(uri.getHost(), uri.getPort(), kTls);
    } else {
      session = std::make_unique<Poco::Net::HTTPClientSession>(uri.getHost(), uri.getPort());
    }
    session->setTimeout(
        Poco::Timespan(std::chrono::duration_cast<std::chrono::microseconds>(timeout).count()));
    Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_POST,
                               uri.getPathAndQuery().empty() ? "/" : uri.getPathAndQuery(),
                               Poco::Net::HTTPMessage::HTTP_1_1);
    req.setContentType("application/json");
    req.setContentLength(static_cast<std::streamsize>(row.body.size()));
    req.set("Treaty-Event", row.event);
    req.set("Treaty-Gid", row.gid);
    req.set("Treaty-Delivery-Id", std::to_string(row.id));
    req.set("Treaty-Signature", signature);
    session->sendRequest(req) << row.body;
    Poco::Net::HTTPResponse resp;
    std::istream& in = session->receiveResponse(resp);
    Poco::NullOutputStream discard;
    Poco::StreamCopier::copyStream(in, discard);
    return static_cast<int>(resp.getStatus());
  } catch (const Poco::Exception& e) {
    return Status::Unavailable(e.displayText());
  } catch (const std::exception& e) {
    return Status::Unavailable(e.what());
  }
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
        "extract(epoch FROM now())::bigint",
        options_.batch, claim_ms);
    w.commit();
    std::vector<Row> out;
    for (const auto& row : r) {
      out.push_back(Row{row[0].as<int64_t>(), row[1].as<std::string>(), row[2].as<std::string>(),
                        row[3].as<std::string>(), row[4].as<std::string>(), row[5].as<int>()});
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
