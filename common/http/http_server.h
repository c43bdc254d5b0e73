#pragma once

// Serves a Router over HTTP/1.1, event-driven (Boost.Beast over Asio): keep-alive, handlers on a
// thread pool, one deadline for each request's headers and body, a body size limit answered with
// 413 before the handler runs. Library exceptions stop here.

#include <cstddef>
#include <memory>

#include "common/duration.h"
#include "common/host_port.h"
#include "common/http/router.h"
#include "common/status.h"

namespace treaty::http {

struct HttpServerOptions {
  HostPort listen{"127.0.0.1", 0};  // port 0: any free port; see HttpServer::address()
  size_t max_body_bytes = 1 << 20;
  // Handlers run on max_threads threads; connections cost no thread. At most max_threads +
  // max_queued connections are open: a new one beyond that closes the connection that has waited
  // longest for a request (idle keep-alive and slow clients first), or, when every one is busy
  // with a request, is refused.
  int max_threads = 256;
  int max_queued = 256;
  // A request's headers and body must all arrive within this long of when it is awaited (and an
  // idle kept-alive connection is closed after it): however slowly a client trickles bytes, it
  // holds its connection no longer.
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
