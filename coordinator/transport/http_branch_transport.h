#pragma once

// BranchTransport over HTTP/1.1 with Poco's client: POST with the protocol's JSON body and
// Treaty-* headers, keep-alive sessions pooled per host, calls of one round in parallel.
// Redirects are not followed (a 3xx is an unknown outcome). Poco exceptions stop here: a call
// that fails to complete is an unknown outcome with the error as its detail. Thread-safe.

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "coordinator/core/branch_transport.h"

namespace Poco::Net {
class HTTPClientSession;
}

namespace treaty::transport {

class HttpBranchTransport : public core::BranchTransport {
 public:
  // `max_idle_per_host` bounds the pooled idle sessions per host:port.
  explicit HttpBranchTransport(int max_idle_per_host = 32);
  ~HttpBranchTransport() override;

  std::vector<core::BranchReply> CallAll(const std::vector<core::BranchCall>& calls) override;

  // One call on the calling thread.
  core::BranchReply Call(const core::BranchCall& call);

 private:
  using Session = Poco::Net::HTTPClientSession;
  core::BranchReply CallOnce(const core::BranchCall& call);
  std::unique_ptr<Session> Borrow(const std::string& host, uint16_t port, bool* reused);
  void Return(const std::string& key, std::unique_ptr<Session> session);

  const int max_idle_per_host_;
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Session>>> idle_;  // guarded by mu_
};

}  // namespace treaty::transport
