#include "coordinator/transport/http_branch_transport.h"

#include <Poco/Exception.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/URI.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <istream>
#include <optional>
#include <sstream>

#include "common/http/tls.h"
#include "common/json_text.h"
#include "common/protocol/protocol.h"

namespace treaty::transport {
namespace {

constexpr size_t kDetailLimit = 300;
constexpr size_t kMaxAnswerBytes = 64 << 10;

// A participant's {"error": {"message": ...}} body reads best as its message alone.
std::string ErrorMessageOrBody(const std::string& body) {
  if (body.empty() || body.front() != '{') return body;
  try {
    Poco::JSON::Parser parser;
    auto o = parser.parse(body).extract<Poco::JSON::Object::Ptr>();
    auto err = o->getObject("error");
    if (err && err->has("message") && err->get("message").isString()) {
      return err->getValue<std::string>("message");
    }
  } catch (const std::exception&) {
  }
  return body;
}

// `body` condensed when it is JSON that PostgreSQL can store (no U+0000); else "".
std::string CondensedJson(const std::string& body) {
  try {
    Poco::JSON::Parser parser;
    Poco::Dynamic::Var v = parser.parse(body);
    std::ostringstream out;
    Poco::JSON::Stringifier::condense(v, out);
    std::string text = out.str();
    if (text.find("\\u0000") != std::string::npos) return "";
    return text;
  } catch (const std::exception&) {
    return "";
  }
}

std::string Shorten(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  if (s.size() > kDetailLimit) s = s.substr(0, kDetailLimit) + "...";
  return s;
}

}  // namespace

class HttpBranchTransport::Watchdog {
 public:
  Watchdog() : thread_([this] { Run(); }) {}
  ~Watchdog() {
    {
      MutexLock lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // Watches a connected session until Disarm(): at `deadline` its connection is shut down,
  // which ends whatever read or write the call is blocked in. The watchdog works on its own
  // duplicate of the socket's descriptor, made here by the calling thread: whatever Poco does
  // with its descriptor meanwhile (closing it on an error), the number the watchdog holds
  // cannot be reused for another socket before Disarm() closes it.
  uint64_t Arm(Session* session, Deadline deadline) {
    const int fd = ::dup(static_cast<int>(session->socket().impl()->sockfd()));
    MutexLock lock(mu_);
    const uint64_t id = ++next_id_;
    armed_[id] = Armed{fd, deadline, false};
    if (deadline < earliest_) cv_.notify_all();
    return id;
  }

  // Stops watching; true when the deadline came first (the connection was shut down: the
  // answer, if any, is not to be trusted, nor the session reused).
  bool Disarm(uint64_t id) {
    MutexLock lock(mu_);
    auto it = armed_.find(id);
    if (it == armed_.end()) return false;
    const bool expired = it->second.expired;
    if (it->second.fd >= 0) ::close(it->second.fd);
    armed_.erase(it);
    return expired;
  }

 private:
  struct Armed {
    int fd;  // a duplicate of the session's socket; -1 if it could not be made
    Deadline deadline;
    bool expired;
  };

  void Run() {
    MutexLock lock(mu_);
    while (!stopping_) {
      const auto now = std::chrono::steady_clock::now();
      earliest_ = Deadline::max();
      for (auto& [id, a] : armed_) {
        if (a.expired) continue;
        if (a.deadline <= now) {
          a.expired = true;
          // Shut down (not closed): the socket itself, so a read or write blocked on it returns
          // at once, TLS or not.
          if (a.fd >= 0) ::shutdown(a.fd, SHUT_RDWR);
        } else {
          earliest_ = std::min(earliest_, a.deadline);
        }
      }
      if (earliest_ == Deadline::max()) {
        cv_.wait(lock.native());
      } else {
        cv_.wait_until(lock.native(), earliest_);
      }
    }
  }

  Mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Armed> armed_ GUARDED_BY(mu_);
  uint64_t next_id_ GUARDED_BY(mu_) = 0;
  Deadline earliest_ GUARDED_BY(mu_) = Deadline::max();  // when Run() wakes next
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: started once the rest is built
};

HttpBranchTransport::HttpBranchTransport(int max_idle_per_host, int call_threads,
                                         const TransportTls& tls,
                                         std::chrono::milliseconds idle_limit)
    : max_idle_per_host_(max_idle_per_host), idle_limit_(idle_limit) {
  // Participants' certificates are verified (chain and host name) against ca_file, or the
  // system's CAs; a client certificate is presented when configured (mTLS).
  http::InitTls();
  tls_ = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, tls.client_key_file,
                                tls.client_cert_file, tls.ca_file,
                                Poco::Net::Context::VERIFY_RELAXED, 9,
                                /*loadDefaultCAs=*/tls.ca_file.empty());
  tls_->disableProtocols(Poco::Net::Context::PROTO_SSLV2 | Poco::Net::Context::PROTO_SSLV3 |
                         Poco::Net::Context::PROTO_TLSV1 | Poco::Net::Context::PROTO_TLSV1_1);
  watchdog_ = std::make_unique<Watchdog>();
  for (int i = 0; i < call_threads; ++i) threads_.emplace_back([this] { CallLoop(); });
}

HttpBranchTransport::~HttpBranchTransport() {
  {
    MutexLock lock(tasks_mu_);
    stopping_ = true;
  }
  tasks_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void HttpBranchTransport::CallLoop() {
  while (true) {
    std::function<void()> task;
    {
      MutexLock lock(tasks_mu_);
      tasks_cv_.wait(lock.native(),
                     [this]() REQUIRES(tasks_mu_) { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, nothing left
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

HttpBranchTransport::Pooled HttpBranchTransport::Borrow(const std::string& key,
                                                        const std::string& scheme,
                                                        const std::string& host, uint16_t port,
                                                        bool fresh, bool* reused) {
  std::vector<std::unique_ptr<Session>> closing;  // closed after mu_ is released
  {
    MutexLock lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    TakeExpired(now, &closing);
    auto it = idle_.find(key);
    if (!fresh && it != idle_.end()) {
      // This host's expired ones go even between sweeps: none is reused after the limit.
      CloseReturnedBy(&it->second, now - idle_limit_, &closing);
      if (!it->second.empty()) {
        Pooled s = std::move(it->second.back());
        it->second.pop_back();
        *reused = true;
        return s;
      }
    }
  }
  *reused = false;
  Pooled s;
  if (scheme == "https") {
    s.session = std::make_unique<Poco::Net::HTTPSClientSession>(host, port, tls_);
  } else {
    s.session = std::make_unique<Session>(host, port);
  }
  s.session->setKeepAlive(true);
  return s;
}

void HttpBranchTransport::Return(const std::string& key, Pooled session) {
  MutexLock lock(mu_);
  // Stamped under mu_, so that each host's list stays in the order of idle_since.
  session.idle_since = std::chrono::steady_clock::now();
  auto& pool = idle_[key];
  if (static_cast<int>(pool.size()) < max_idle_per_host_) pool.push_back(std::move(session));
}

void HttpBranchTransport::DropIdleSince(const std::string& key,
                                        std::chrono::steady_clock::time_point since) {
  std::vector<std::unique_ptr<Session>> closing;  // closed after mu_ is released
  MutexLock lock(mu_);
  if (auto it = idle_.find(key); it != idle_.end()) CloseReturnedBy(&it->second, since, &closing);
}

void HttpBranchTransport::TakeExpired(std::chrono::steady_clock::time_point now,
                                      std::vector<std::unique_ptr<Session>>* closing) {
  if (now < next_sweep_) return;
  // A sweep at most every half limit (and second), and only when some host is called: a
  // session is closed at a later call to any host.
  next_sweep_ =
      now + std::min<std::chrono::steady_clock::duration>(idle_limit_ / 2, std::chrono::seconds(1));
  for (auto it = idle_.begin(); it != idle_.end();) {
    CloseReturnedBy(&it->second, now - idle_limit_, closing);
    it = it->second.empty() ? idle_.erase(it) : std::next(it);
  }
}

void HttpBranchTransport::CloseReturnedBy(std::vector<Pooled>* pool,
                                          std::chrono::steady_clock::time_point cutoff,
                                          std::vector<std::unique_ptr<Session>>* closing) {
  // Oldest first: the first one returned after the cutoff ends them.
  size_t n = 0;
  while (n < pool->size() && (*pool)[n].idle_since <= cutoff) ++n;
  for (size_t i = 0; i < n; ++i) closing->push_back(std::move((*pool)[i].session));
  pool->erase(pool->begin(), pool->begin() + static_cast<std::ptrdiff_t>(n));
}

core::BranchReply HttpBranchTransport::Call(const core::BranchCall& call) {
  return CallWithin(call, std::chrono::steady_clock::now() + call.timeout);
}

core::BranchReply HttpBranchTransport::CallWithin(const core::BranchCall& call, Deadline deadline) {
  auto began = std::chrono::steady_clock::now();
  core::BranchReply reply = CallOnce(call, deadline);
  reply.elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - began);
  return reply;
}

core::BranchReply HttpBranchTransport::CallOnce(const core::BranchCall& call, Deadline deadline) {
  core::BranchReply reply;
  Poco::URI uri;
  try {
    uri = Poco::URI(call.url);
  } catch (const Poco::Exception& e) {
    reply.detail = "bad URL: " + e.displayText();
    return reply;
  }
  if (uri.getScheme() != "http" && uri.getScheme() != "https") {
    reply.detail = "unsupported URL scheme: " + uri.getScheme();
    return reply;
  }
  std::string key = uri.getScheme() + "://" + uri.getHost() + ":" + std::to_string(uri.getPort());
  // A pooled session may have been closed by the participant while idle; every op is idempotent,
  // so one more try, on a new connection, is safe.
  for (int attempt = 0; attempt < 2; ++attempt) {
    // What is left of the call's budget: a retry, or a call that waited for a thread, gets only
    // that (the driver sized the budget to fit in its lease).
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      reply.detail = attempt == 0 ? "not started: the call's time budget was spent waiting"
                                  : reply.detail + " (no time left to try again)";
      break;
    }
    bool reused = false;
    Pooled pooled =
        Borrow(key, uri.getScheme(), uri.getHost(), uri.getPort(), /*fresh=*/attempt > 0, &reused);
    Session* session = pooled.session.get();
    std::optional<uint64_t> watched;
    std::optional<core::BranchReply> answered;
    bool reusable = false;
    try {
      // setTimeout applies when a session connects; a pooled, connected one needs its socket's
      // timeouts set for this call, unless the last call set the same.
      const int64_t timeout_ms = std::min<int64_t>(call.timeout.count(), left.count());
      Poco::Timespan timeout(static_cast<long>(timeout_ms) * 1000);
      session->setTimeout(timeout);
      if (session->connected() && pooled.socket_timeout_ms != timeout_ms) {
        session->socket().setReceiveTimeout(timeout);
        session->socket().setSendTimeout(timeout);
      }
      pooled.socket_timeout_ms = timeout_ms;
      Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_POST, uri.getPathAndQuery(),
                                 Poco::Net::HTTPMessage::HTTP_1_1);
      req.setKeepAlive(true);
      req.setContentType("application/json");
      req.setContentLength(static_cast<std::streamsize>(call.body.size()));
      req.set(protocol::kGidHeader, call.gid);
      req.set(protocol::kBranchIdHeader, call.branch_id);
      req.set(protocol::kOpHeader, call.op);
      for (const auto& [name, value] : call.headers) req.set(name, value);
      session->sendRequest(req) << call.body;
      // Connected and sent (both bounded by the socket timeouts, set to what is left): from here,
      // however slowly the participant answers, the call ends at its deadline.
      watched = watchdog_->Arm(session, deadline);
      Poco::Net::HTTPResponse resp;
      std::istream& in = session->receiveResponse(resp);
      // A participant's answer is read up to kMaxAnswerBytes: what it says beyond that is not
      // needed, and an endless body must not hold the call (or memory).
      std::string body;
      char buf[8192];
      bool whole = true;
      while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        body.append(buf, static_cast<size_t>(in.gcount()));
        if (body.size() > kMaxAnswerBytes) {
          whole = false;
          break;
        }
      }
      // A failed read (a reset, the watchdog's shutdown) ends the loop like the end of the body:
      // the stream says which it was.
      if (whole && in.bad()) {
        throw Poco::IOException("the answer was cut short after " + std::to_string(body.size()) +
                                " bytes");
      }
      // A body cut short (the connection reset, or shut down at the deadline) is no answer: a
      // 200 whose end never came may be a proxy's, or a participant's that crashed mid-way.
      if (whole && resp.hasContentLength() &&
          static_cast<int64_t>(body.size()) < resp.getContentLength64()) {
        throw Poco::ProtocolException("the answer was cut short: " + std::to_string(body.size()) +
                                      " of " + std::to_string(resp.getContentLength64()) +
                                      " bytes");
      }
      answered = ReplyFromResponse(static_cast<int>(resp.getStatus()), body);
      if (call.wants_json_body && whole && answered->outcome == core::BranchReply::Outcome::kDone) {
        answered->json_body = CondensedJson(body);
      }
      reusable = whole && resp.getKeepAlive();
    } catch (const Poco::Exception& e) {
      reply.detail = Shorten(e.displayText());
    } catch (const std::exception& e) {
      reply.detail = Shorten(e.what());
    }
    if (watched && watchdog_->Disarm(*watched)) {
      // The deadline came first: whatever was read is not an answer, and the connection is gone.
      reply.detail = "no whole answer within the call's " + std::to_string(call.timeout.count()) +
                     " ms" + (reply.detail.empty() ? "" : " (" + reply.detail + ")");
      break;
    }
    if (answered) {
      if (reusable) Return(key, std::move(pooled));
      return *answered;
    }
    if (!reused) break;
    // The participant closed a connection idle since then: those idle longer are closed too.
    DropIdleSince(key, pooled.idle_since);
  }
  reply.outcome = core::BranchReply::Outcome::kUnknown;
  reply.http_status = 0;
  return reply;
}

core::BranchReply HttpBranchTransport::ReplyFromResponse(int http_status, const std::string& body) {
  core::BranchReply reply;
  reply.http_status = http_status;
  reply.outcome = core::ClassifyHttpStatus(http_status);
  // Cut to a few hundred bytes, then made valid UTF-8: the detail goes into JSON and logs.
  reply.detail = ValidUtf8(Shorten(
      reply.outcome == core::BranchReply::Outcome::kDone ? body : ErrorMessageOrBody(body)));
  return reply;
}

std::vector<core::BranchReply> HttpBranchTransport::CallAll(
    const std::vector<core::BranchCall>& calls) {
  std::vector<core::BranchReply> replies(calls.size());
  if (calls.empty()) return replies;
  std::vector<Deadline> deadlines;
  deadlines.reserve(calls.size());
  const auto asked = std::chrono::steady_clock::now();
  for (const core::BranchCall& c : calls) deadlines.push_back(asked + c.timeout);
  std::vector<std::future<core::BranchReply>> others;
  others.reserve(calls.size() - 1);
  if (!threads_.empty()) {
    MutexLock lock(tasks_mu_);
    for (size_t i = 1; i < calls.size(); ++i) {
      auto task = std::make_shared<std::packaged_task<core::BranchReply()>>(
          [this, &calls, &deadlines, i] { return CallWithin(calls[i], deadlines[i]); });
      others.push_back(task->get_future());
      tasks_.emplace_back([task] { (*task)(); });
    }
  }
  // One wake-up per task: waking the whole pool for each call cost more than the calls.
  for (size_t i = 0; i < others.size(); ++i) tasks_cv_.notify_one();
  replies[0] = CallWithin(calls[0], deadlines[0]);
  for (size_t i = 1; i < calls.size(); ++i) {
    replies[i] = threads_.empty() ? CallWithin(calls[i], deadlines[i]) : others[i - 1].get();
  }
  return replies;
}

}  // namespace treaty::transport
