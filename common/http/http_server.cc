#include "common/http/http_server.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/SSLManager.h>

#include "common/http/tls.h"
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/String.h>
#include <Poco/URI.h>

#include <condition_variable>
#include <mutex>

namespace treaty::http {
namespace {

// Requests being handled, so that Stop() can wait for them before what they use goes away.
struct InFlight {
  std::mutex mu;
  std::condition_variable idle;
  int count = 0;  // guarded by mu
};

class RouterHandler : public Poco::Net::HTTPRequestHandler {
 public:
  RouterHandler(const Router& router, size_t max_body, InFlight& in_flight)
      : router_(router), max_body_(max_body), in_flight_(in_flight) {
    std::lock_guard<std::mutex> lock(in_flight_.mu);
    ++in_flight_.count;
  }
  ~RouterHandler() override {
    {
      std::lock_guard<std::mutex> lock(in_flight_.mu);
      --in_flight_.count;
    }
    in_flight_.idle.notify_all();
  }

  void handleRequest(Poco::Net::HTTPServerRequest& req,
                     Poco::Net::HTTPServerResponse& resp) override {
    ApiResponse answer;
    try {
      answer = Handle(req);
    } catch (const Poco::Exception& e) {
      answer = JsonError(400, "bad_request", e.displayText());
    } catch (const std::exception& e) {
      answer = JsonError(500, "internal", e.what());
    }
    resp.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(answer.status));
    resp.setContentType(answer.content_type);
    resp.set("X-Content-Type-Options", "nosniff");
    for (const auto& [name, value] : answer.headers) resp.set(name, value);
    resp.setContentLength(static_cast<std::streamsize>(answer.body.size()));
    resp.send() << answer.body;
  }

 private:
  ApiResponse Handle(Poco::Net::HTTPServerRequest& req) {
    if (req.hasContentLength() && req.getContentLength64() > static_cast<int64_t>(max_body_)) {
      return TooLarge(req);
    }
    Poco::URI uri(req.getURI());
    ApiRequest r;
    r.method = req.getMethod();
    r.remote = req.clientAddress().toString();
    r.path = uri.getPath();
    for (const auto& [k, v] : uri.getQueryParameters()) r.query[k] = v;
    for (const auto& [k, v] : req) r.headers[Poco::toLower(k)] = v;
    std::istream& in = req.stream();
    char buf[8192];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
      r.body.append(buf, static_cast<size_t>(in.gcount()));
      if (r.body.size() > max_body_) return TooLarge(req);
    }
    return router_.Dispatch(std::move(r));
  }

  // Answers 413. The client may still be sending: a bounded part of the body is read and dropped
  // first, so that it gets to read the answer instead of a reset connection. The connection is
  // closed afterwards.
  ApiResponse TooLarge(Poco::Net::HTTPServerRequest& req) {
    req.response().setKeepAlive(false);
    std::istream& in = req.stream();
    char buf[16384];
    size_t drained = 0;
    const size_t cap = 16 * max_body_;
    while (drained < cap && (in.read(buf, sizeof buf) || in.gcount() > 0)) {
      drained += static_cast<size_t>(in.gcount());
    }
    return JsonError(413, "too_large", "request body over " + std::to_string(max_body_) + " bytes");
  }

  const Router& router_;
  size_t max_body_;
  InFlight& in_flight_;
};

class RouterHandlerFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  RouterHandlerFactory(const Router& router, size_t max_body, InFlight& in_flight)
      : router_(router), max_body_(max_body), in_flight_(in_flight) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new RouterHandler(router_, max_body_, in_flight_);
  }

 private:
  const Router& router_;
  size_t max_body_;
  InFlight& in_flight_;
};

}  // namespace

struct HttpServer::Impl {
  InFlight in_flight;
  std::unique_ptr<Poco::Net::HTTPServer> server;
  bool stopped = false;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                      const Router& router) {
  try {
    Poco::Net::SocketAddress address(options.listen.host, options.listen.port);
    std::unique_ptr<Poco::Net::ServerSocket> socket;
    if (!options.tls_cert_file.empty()) {
      InitTls();
      const bool mutual = !options.tls_client_ca_file.empty();
      Poco::Net::Context::Ptr context = new Poco::Net::Context(
          Poco::Net::Context::TLS_SERVER_USE, options.tls_key_file, options.tls_cert_file,
          options.tls_client_ca_file,
          mutual ? Poco::Net::Context::VERIFY_STRICT : Poco::Net::Context::VERIFY_NONE);
      // Clients are known by their certificate's chain, not by their address's host name.
      context->enableExtendedCertificateVerification(false);
      context->disableProtocols(Poco::Net::Context::PROTO_SSLV2 | Poco::Net::Context::PROTO_SSLV3 |
                                Poco::Net::Context::PROTO_TLSV1 | Poco::Net::Context::PROTO_TLSV1_1);
      socket = std::make_unique<Poco::Net::SecureServerSocket>(address, /*backlog=*/256, context);
    } else {
      socket = std::make_unique<Poco::Net::ServerSocket>(address, /*backlog=*/256);
    }
    HostPort bound{options.listen.host, socket->address().port()};
    auto* params = new Poco::Net::HTTPServerParams();
    params->setMaxThreads(options.max_threads);
    params->setMaxQueued(options.max_queued);
    params->setKeepAlive(true);
    const auto timeout_us = std::chrono::duration_cast<std::chrono::microseconds>(options.read_timeout).count();
    params->setTimeout(Poco::Timespan(timeout_us));
    params->setKeepAliveTimeout(Poco::Timespan(timeout_us));
    auto impl = std::make_unique<Impl>();
    impl->server = std::make_unique<Poco::Net::HTTPServer>(
        new RouterHandlerFactory(router, options.max_body_bytes, impl->in_flight), *socket, params);
    impl->server->start();
    std::unique_ptr<HttpServer> s(new HttpServer(std::move(impl)));
    s->address_ = bound;
    return s;
  } catch (const Poco::Exception& e) {
    return Status::Unavailable("cannot listen on " + options.listen.ToString() + ": " +
                               e.displayText());
  }
}

void HttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->server->stopAll(/*abortCurrent=*/false);
  // Poco's stop does not wait for handlers still running in its thread pool.
  std::unique_lock<std::mutex> lock(impl_->in_flight.mu);
  impl_->in_flight.idle.wait_for(lock, std::chrono::seconds(30),
                                 [&] { return impl_->in_flight.count == 0; });
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace treaty::http
