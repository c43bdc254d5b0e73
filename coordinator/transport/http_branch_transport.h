#pragma once

// BranchTransport over HTTP/1.1 with Poco's client: POST with the protocol's JSON body and
// Treaty-* headers, keep-alive sessions pooled per host, calls of one round in parallel.
// Redirects are not followed (a 3xx is an unknown outcome). Poco exceptions stop here: a call
// that fails to complete is an unknown outcome with the error as its detail. Thread-safe.
//
// A pooled session idle for longer than `idle_limit` is not reused but closed: the default
// stays under common servers' idle timeouts (Node.js closes kept-alive connections after 5 s),
// so that a call rarely meets a connection its server is closing. Idle sessions of hosts no
// longer called are closed too, at a later call to any host. A call whose pooled connection
// turns out closed is tried once more on a new one, and the host's connections idle longer
// than that one are closed.

#include <Poco/Net/Context.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"
#include "coordinator/core/branch_transport.h"

namespace Poco::Net {
class HTTPClientSession;
}

namespace treaty::transport {

// Where participants' certificates are checked against, and the client certificate (optional).
struct TransportTls {
  std::string ca_file;  // empty: the system's CAs
  std::string client_cert_file;
  std::string client_key_file;
};

// Calls participants over HTTP or HTTPS, keeping connections alive per scheme, host and port.
// Redirects are not followed: a 3xx answer is an unknown outcome, like any other non-2xx.
class HttpBranchTransport : public core::BranchTransport {
 public:
  // `max_idle_per_host` bounds the pooled idle sessions per host:port. `call_threads` make the
  // calls of a CallAll() beside the calling thread (threads are not started per call: creating
  // one costs more than a call to a nearby participant).
  explicit HttpBranchTransport(int max_idle_per_host = 32, int call_threads = 32,
                               const TransportTls& tls = {},
                               std::chrono::milliseconds idle_limit = std::chrono::seconds(4));
  ~HttpBranchTransport() override;

  std::vector<core::BranchReply> CallAll(const std::vector<core::BranchCall>& calls) override;

  // One call on the calling thread.
  core::BranchReply Call(const core::BranchCall& call);

  // What a participant's answer means: the outcome by status (2xx done, 409 refused, anything
  // else unknown) and a short detail (an {"error":{"message"}} body reads as its message).
  // Any bytes at all are a valid `body`.
  static core::BranchReply ReplyFromResponse(int http_status, const std::string& body);

 private:
  using Session = Poco::Net::HTTPClientSession;
  // A session and what the pool knows of it.
  struct Pooled {
    std::unique_ptr<Session> session;
    std::chrono::steady_clock::time_point idle_since;
    int64_t socket_timeout_ms = -1;  // set on its socket by the last call; -1: none yet
  };
  using Deadline = std::chrono::steady_clock::time_point;
  // One call that ends by `deadline`: its whole budget (call.timeout from when it was asked),
  // the wait for a call thread and a retry on a new connection included.
  core::BranchReply CallWithin(const core::BranchCall& call, Deadline deadline);
  core::BranchReply CallOnce(const core::BranchCall& call, Deadline deadline);
  // A pooled session of `key` idle for less than the limit, or (none, or `fresh`) a new one.
  Pooled Borrow(const std::string& key, const std::string& scheme, const std::string& host,
                uint16_t port, bool fresh, bool* reused);
  void Return(const std::string& key, Pooled session);
  // Closes the idle sessions of `key` returned at `since` or before.
  void DropIdleSince(const std::string& key, std::chrono::steady_clock::time_point since);
  // Moves the sessions idle for longer than idle_limit_ out of the pool into `closing` (closed
  // when it goes, outside mu_).
  void TakeExpired(std::chrono::steady_clock::time_point now,
                   std::vector<std::unique_ptr<Session>>* closing) REQUIRES(mu_);
  // Moves the sessions of `pool` returned at `cutoff` or before into `closing`.
  static void CloseReturnedBy(std::vector<Pooled>* pool,
                              std::chrono::steady_clock::time_point cutoff,
                              std::vector<std::unique_ptr<Session>>* closing);

  void CallLoop();

  // Ends calls that outlive their deadline, however their participant trickles its answer: a
  // socket timeout bounds each read, not the call.
  class Watchdog;

  const int max_idle_per_host_;
  const std::chrono::milliseconds idle_limit_;
  Poco::Net::Context::Ptr tls_;
  Mutex mu_;
  // Per "scheme://host:port", most recently returned last.
  std::map<std::string, std::vector<Pooled>> idle_ GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point next_sweep_ GUARDED_BY(mu_);

  Mutex tasks_mu_;
  std::condition_variable tasks_cv_;
  std::deque<std::function<void()>> tasks_ GUARDED_BY(tasks_mu_);
  bool stopping_ GUARDED_BY(tasks_mu_) = false;
  std::vector<std::thread> threads_;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace treaty::transport
