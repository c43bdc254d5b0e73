#pragma once

// Serves a Router over HTTP/1.1 with Poco's server: keep-alive, a thread pool, and a body size
// limit answered with 413 before the handler runs. Poco exceptions stop here.

#include <cstddef>
#include <memory>

#include "common/status.h"
#include "config/config_reader.h"
#include "common/http/router.h"

namespace treaty::http {

struct HttpServerOptions {
  HostPort listen{"127.0.0.1", 0};  // port 0: any free port; see HttpServer::address()
  size_t max_body_bytes = 1 << 20;
  int max_threads = 32;
  int max_queued = 256;
};

class HttpServer {
 public:
  // Binds and starts serving. `router` must outlive the server. Fails when the address is taken.
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
