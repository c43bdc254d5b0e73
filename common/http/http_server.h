#pragma once

// Serves a Router over HTTP/1.1 with Poco's server: keep-alive, a thread pool, and a body size
// limit answered with 413 before the handler runs. Poco exceptions stop here.

#include <cstddef>
#include <memory>

#include "common/duration.h"
#include "common/status.h"
#include "config/config_reader.h"
#include "common/http/router.h"

namespace treaty::http {

struct HttpServerOptions {
  HostPort listen{"127.0.0.1", 0};  // port 0: any free port; see HttpServer::address()
  size_t max_body_bytes = 1 << 20;
  // One thread serves one connection for as long as it is kept alive: at most max_threads
  // clients are served at once, max_queued more wait; beyond that, connections are refused.
  int max_threads = 256;
  int max_queued = 256;
  // A connection that sends nothing for this long (mid-request, or idle between requests) is
  // closed, so slow or silent clients cannot hold threads.
  Duration read_timeout = std::chrono::seconds(10);
  // Both set: HTTPS (TLS via OpenSSL) with this PEM certificate chain and key.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Set (with TLS): every client must present a certificate signed by these CAs (mutual TLS).
  std::string tls_client_ca_file;
};

class HttpServer {
 public:
  // Binds and starts serving. `router` must outlive the server. Fails when the address is taken
  // or the TLS files cannot be loaded.
  static Result<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                   const Router& router);
  ~HttpServer();  // Stop()

  // The bound address, with the real port when 0 was asked for.
  HostPort address() const { return address_; }

  // Stops accepting and waits (up to 30s) for requests in flight. Idempotent.
  void Stop();

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  HostPort address_;
};

}  // namespace treaty::http
