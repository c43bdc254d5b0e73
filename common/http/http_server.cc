#include "common/http/http_server.h"

// Event-driven with Boost.Beast over Asio: connections cost a socket and a small buffer, not a
// thread, so thousands of idle or slow clients hold no one up. Reading a request has one deadline
// for its headers and body together (a slow sender trickling bytes cannot stretch it, unlike a
// per-read socket timeout); handlers, which block (the store, waiting for an outcome), run on a
// pool of their own and never on the I/O threads.

#include <Poco/Exception.h>
#include <Poco/String.h>
#include <Poco/URI.h>
#include <openssl/ssl.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <condition_variable>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

#include "common/log.h"
#include "common/thread_annotations.h"
#include "common/worker_threads.h"

namespace treaty::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

// The header block of a request, at most (beyond: 431-style refusal, answered as 400).
constexpr uint32_t kMaxHeaderBytes = 16 << 10;

const Logger kLog("http");

// Requests being handled, so that Stop() can wait for them before what they use goes away.
struct InFlight {
  Mutex mu;
  std::condition_variable idle;
  int count GUARDED_BY(mu) = 0;
};

class Connection;

// What every connection shares: the options, the router, the handler pool, the connection
// count and the list of connections waiting for a request (oldest first), from which the
// longest-waiting is closed when a new client would exceed the limit.
struct Shared {
  Shared(const HttpServerOptions& o, const Router& r, WorkerThreads& w)
      : options(o), router(r), workers(w) {}
  const HttpServerOptions options;
  const Router& router;
  WorkerThreads& workers;  // owned by the server, which outlives every use
  InFlight in_flight;
  Mutex mu;
  std::list<std::weak_ptr<Connection>> waiting GUARDED_BY(mu);
  int open GUARDED_BY(mu) = 0;
  bool stopping GUARDED_BY(mu) = false;
};

// One client connection: reads a request within the deadline, hands it to the pool, writes the
// answer, and waits for the next (keep-alive) within the same deadline.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  virtual ~Connection() {
    MutexLock lock(shared_->mu);
    --shared_->open;
    if (waiting_) shared_->waiting.erase(*waiting_);
  }
  virtual void Start() = 0;
  // Closes the connection from any thread (on its own strand).
  virtual void Close() = 0;

  // Takes this connection off the waiting list: it is being closed, to make room or because
  // the server stops; a request it has just read is not handled. Requires shared_->mu: its
  // callers hold the server's Shared::mu, which the analysis cannot tie to this connection's
  // shared_ (a REQUIRES here would not be provable at the call), hence the assertion.
  void ForgetWaitingLocked() {
    shared_->mu.AssertHeld();
    if (waiting_) shared_->waiting.erase(*waiting_);
    waiting_.reset();
    closing_ = true;
  }

 protected:
  explicit Connection(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

  // Marks this connection as waiting for a request (true) or busy with one (false). Requires
  // being on the connection's strand.
  void SetWaiting(bool waiting) {
    MutexLock lock(shared_->mu);
    if (waiting_) {
      shared_->waiting.erase(*waiting_);
      waiting_.reset();
    }
    if (waiting) {
      waiting_ = shared_->waiting.insert(shared_->waiting.end(), weak_from_this());
    }
  }

  std::shared_ptr<Shared> shared_;
  std::atomic<bool> closing_{false};

 private:
  std::optional<std::list<std::weak_ptr<Connection>>::iterator> waiting_ GUARDED_BY(shared_->mu);
};

ApiResponse Dispatch(Shared& shared, ApiRequest r) {
  try {
    return shared.router.Dispatch(std::move(r));
  } catch (const std::exception& e) {
    // The cause stays in the log: it may name what a client must not see.
    kLog.Warn("a handler failed", {{"path", r.path}, {"error", e.what()}});
    return JsonError(500, "internal", "internal error");
  }
}

template <typename Stream>
class StreamConnection : public Connection {
 public:
  StreamConnection(std::shared_ptr<Shared> shared, Stream stream)
      : Connection(std::move(shared)), stream_(std::move(stream)) {}

  void Start() override {
    asio::dispatch(stream_.get_executor(), [self = Self()] { self->Begin(); });
  }

  void Close() override {
    asio::post(stream_.get_executor(), [self = Self()] {
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
      beast::get_lowest_layer(self->stream_).close();
    });
  }

 private:
  std::shared_ptr<StreamConnection> Self() {
    return std::static_pointer_cast<StreamConnection>(shared_from_this());
  }
  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(stream_); }

  void Begin() {
    beast::error_code ec;
    auto remote = Tcp().socket().remote_endpoint(ec);
    if (!ec) remote_ = remote.address().to_string() + ":" + std::to_string(remote.port());
    if constexpr (std::is_same_v<Stream, beast::ssl_stream<beast::tcp_stream>>) {
      SetWaiting(true);
      Tcp().expires_after(shared_->options.read_timeout);
      stream_.async_handshake(asio::ssl::stream_base::server, [self = Self()](beast::error_code e) {
        if (e) return;  // not a TLS client, or too slow: closed
        self->ReadHeader();
      });
    } else {
      ReadHeader();
    }
  }

  // A request's headers and body must arrive within read_timeout of when it is awaited: one
  // deadline for the whole request (and for the idle wait before a kept-alive one).
  void ReadHeader() {
    SetWaiting(true);
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    parser_->body_limit(shared_->options.max_body_bytes);
    Tcp().expires_after(shared_->options.read_timeout);
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = Self()](beast::error_code e, size_t) { self->OnHeader(e); });
  }

  void OnHeader(beast::error_code e) {
    if (e) return Fail(e);
    const auto& req = parser_->get();
    if (auto len = parser_->content_length(); len && *len > shared_->options.max_body_bytes) {
      return TooLarge();
    }
    if (req.version() >= 11 && beast::iequals(req[bhttp::field::expect], "100-continue")) {
      // Clients such as curl wait for this before they send a body.
      auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_,
                                                                       req.version());
      bhttp::async_write(stream_, *cont, [self = Self(), cont](beast::error_code w, size_t) {
        if (w) return;
        self->ReadBody();
      });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = Self()](beast::error_code e, size_t) { self->OnRequest(e); });
  }

  void Fail(beast::error_code e) {
    if (e == bhttp::error::body_limit) return TooLarge();
    const bool malformed =
        e.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
        e != bhttp::error::end_of_stream && e != bhttp::error::partial_message;
    if (malformed) {
      keep_alive_ = false;
      return Write(JsonError(400, "bad_request", "malformed request: " + e.message()));
    }
    // A timeout (the deadline for the request passed), the client gone, or TLS shut down: the
    // connection simply closes.
  }

  // Answers 413 and closes; what the client is still sending is read and dropped for a while,
  // so that it gets to read the answer rather than a reset connection.
  void TooLarge() {
    keep_alive_ = false;
    drain_ = true;
    Write(JsonError(
        413, "too_large",
        "request body over " + std::to_string(shared_->options.max_body_bytes) + " bytes"));
  }

  void OnRequest(beast::error_code e) {
    if (e) return Fail(e);
    SetWaiting(false);
    if (closing_) return;   // evicted or stopping meanwhile: not handled, the client retries
    Tcp().expires_never();  // the handler takes what it takes; the write has its own deadline
    auto msg = parser_->release();
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    head_ = msg.method() == bhttp::verb::head;
    ApiRequest r;
    r.method = std::string(msg.method_string());
    r.remote = remote_;
    try {
      Poco::URI uri(std::string(msg.target()));
      r.path = uri.getPath();
      for (const auto& [k, v] : uri.getQueryParameters()) r.query[k] = v;
    } catch (const Poco::Exception& ex) {
      keep_alive_ = false;
      return Write(JsonError(400, "bad_request", ex.displayText()));
    }
    for (const auto& field : msg) {
      r.headers[Poco::toLower(std::string(field.name_string()))] = std::string(field.value());
    }
    r.body = std::move(msg.body());
    {
      MutexLock lock(shared_->in_flight.mu);
      ++shared_->in_flight.count;
    }
    answering_ = true;
    shared_->workers.Post([self = Self(), r = std::move(r)]() mutable {
      ApiResponse answer = Dispatch(*self->shared_, std::move(r));
      asio::post(self->stream_.get_executor(),
                 [self, answer = std::move(answer)]() mutable { self->Write(std::move(answer)); });
    });
  }

  // Counted as in flight from the read of a request until its answer is written (or fails).
  void Answered() {
    if (!answering_) return;
    answering_ = false;
    {
      MutexLock lock(shared_->in_flight.mu);
      --shared_->in_flight.count;
    }
    shared_->in_flight.idle.notify_all();
  }

  void Write(ApiResponse answer) {
    {
      MutexLock lock(shared_->mu);
      if (shared_->stopping) keep_alive_ = false;  // the last answer on this connection
    }
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>();
    res->result(static_cast<unsigned>(answer.status));
    res->version(version_);
    res->set(bhttp::field::content_type, answer.content_type);
    res->set("X-Content-Type-Options", "nosniff");
    for (const auto& [name, value] : answer.headers) res->set(name, value);
    res->body() = std::move(answer.body);
    res->keep_alive(keep_alive_);
    res->prepare_payload();
    if (head_) res->body().clear();  // the length stays as for GET; no body follows
    Tcp().expires_after(shared_->options.read_timeout);
    auto done = [self = Self(), res](beast::error_code e, size_t) {
      self->Answered();
      if (e) return;
      if (self->keep_alive_) return self->ReadHeader();
      if (self->drain_) return self->Drain(0);
      self->Shutdown();
    };
    if (head_) {
      auto sr = std::make_shared<bhttp::response_serializer<bhttp::string_body>>(*res);
      bhttp::async_write_header(stream_, *sr,
                                [sr, done](beast::error_code e, size_t n) { done(e, n); });
      return;
    }
    bhttp::async_write(stream_, *res, std::move(done));
  }

  void Drain(size_t drained) {
    const size_t cap = 16 * shared_->options.max_body_bytes;
    if (drained >= cap) return Shutdown();
    if (drained == 0) Shutdown();  // once: the answer is out, only reading remains
    auto buf = std::make_shared<std::array<char, 16384>>();
    stream_.async_read_some(asio::buffer(*buf),
                            [self = Self(), buf, drained](beast::error_code e, size_t n) {
                              if (e) return;
                              self->Drain(drained + n);
                            });
  }

  void Shutdown() {
    beast::error_code ignored;
    Tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string remote_;
  bool keep_alive_ = true;
  bool drain_ = false;
  bool head_ = false;
  unsigned version_ = 11;
  bool answering_ = false;  // a request is in flight (counted in in_flight)
};

}  // namespace

struct HttpServer::Impl {
  explicit Impl(const HttpServerOptions& options, const Router& router)
      : workers(std::make_unique<WorkerThreads>(options.max_threads)),
        shared(std::make_shared<Shared>(options, router, *workers)) {}
  ~Impl() {
    // Handlers still queued on the pool hold connections, whose sockets belong to io: the pool
    // goes first, while io still exists.
    workers.reset();
  }
  // Started as requests need them, up to max_threads (each costs memory once used).
  std::unique_ptr<WorkerThreads> workers;
  std::shared_ptr<Shared> shared;
  asio::io_context io;
  asio::strand<asio::io_context::executor_type> accept_strand{asio::make_strand(io)};
  tcp::acceptor acceptor{accept_strand};
  asio::steady_timer accept_retry{accept_strand};
  std::optional<asio::ssl::context> tls;
  std::vector<std::thread> io_threads;
  bool stopped = false;

  void Accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code e, tcp::socket s) {
      if (e == asio::error::operation_aborted || !acceptor.is_open()) return;  // stopping
      if (e) {
        // Out of descriptors (or another failure of the moment): make room, and try again a
        // little later rather than at once, which would spin while the backlog stays.
        if (e == asio::error::no_descriptors) EvictOne();
        accept_retry.expires_after(std::chrono::milliseconds(50));
        accept_retry.async_wait([this](beast::error_code w) {
          if (!w) Accept();
        });
        return;
      }
      Admit(std::move(s));
      Accept();
    });
  }

  // Closes the connection that has waited longest for a request, if any.
  bool EvictOne() {
    std::shared_ptr<Connection> evict;
    {
      MutexLock lock(shared->mu);
      for (auto it = shared->waiting.begin(); it != shared->waiting.end() && !evict; ++it) {
        evict = it->lock();
      }
      if (evict) evict->ForgetWaitingLocked();
    }
    if (evict) evict->Close();
    return evict != nullptr;
  }

  // Serves a new client, closing the connection that has waited longest for a request when the
  // limit is reached (idle keep-alive and slow clients go first); with none waiting, the new
  // client is refused.
  void Admit(tcp::socket socket) {
    std::shared_ptr<Connection> evict;
    {
      MutexLock lock(shared->mu);
      const int limit = std::max(1, shared->options.max_threads + shared->options.max_queued);
      if (shared->stopping) return;
      if (shared->open >= limit) {
        // Entries that no longer lock are connections going away: they remove themselves.
        for (auto it = shared->waiting.begin(); it != shared->waiting.end() && !evict; ++it) {
          evict = it->lock();
        }
        if (!evict) return;  // the socket closes: every connection is busy with a request
        evict->ForgetWaitingLocked();
      }
      ++shared->open;
    }
    if (evict) evict->Close();
    beast::tcp_stream tcp_stream(std::move(socket));
    std::shared_ptr<Connection> c;
    if (tls) {
      c = std::make_shared<StreamConnection<beast::ssl_stream<beast::tcp_stream>>>(
          shared, beast::ssl_stream<beast::tcp_stream>(std::move(tcp_stream), *tls));
    } else {
      c = std::make_shared<StreamConnection<beast::tcp_stream>>(shared, std::move(tcp_stream));
    }
    c->Start();
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                      const Router& router) {
  // Each connection is a descriptor: the soft limit (often 1,024 under a service manager) is
  // raised to the hard one, so that max_connections, not the limit, decides.
  if (rlimit limit{}; ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  auto impl = std::make_unique<Impl>(options, router);
  try {
    if (!options.tls_cert_file.empty()) {
      impl->tls.emplace(asio::ssl::context::tls_server);
      impl->tls->set_options(asio::ssl::context::default_workarounds |
                             asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                             asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                             asio::ssl::context::single_dh_use);
      impl->tls->use_certificate_chain_file(options.tls_cert_file);
      impl->tls->use_private_key_file(options.tls_key_file, asio::ssl::context::pem);
      // Sessions are not resumed: each connection is verified afresh (and OpenSSL refuses a
      // resumption of a verified session without a session id context).
      SSL_CTX_set_session_cache_mode(impl->tls->native_handle(), SSL_SESS_CACHE_OFF);
      SSL_CTX_set_options(impl->tls->native_handle(), SSL_OP_NO_TICKET);
      if (!options.tls_client_ca_file.empty()) {
        // Mutual TLS: clients are known by their certificate's chain, not by their address.
        impl->tls->load_verify_file(options.tls_client_ca_file);
        impl->tls->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
      }
    }
    tcp::resolver resolver(impl->io);
    auto endpoints = resolver.resolve(options.listen.host, std::to_string(options.listen.port));
    if (endpoints.empty()) {
      return Status::Unavailable("cannot listen on " + options.listen.ToString() +
                                 ": no such address");
    }
    const tcp::endpoint endpoint = *endpoints.begin();
    impl->acceptor.open(endpoint.protocol());
    impl->acceptor.set_option(asio::socket_base::reuse_address(true));
    impl->acceptor.bind(endpoint);
    impl->acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    return Status::Unavailable("cannot listen on " + options.listen.ToString() + ": " + e.what());
  }
  HostPort bound{options.listen.host, impl->acceptor.local_endpoint().port()};
  impl->Accept();
  // I/O threads (reading, TLS and writing only; the handlers run on the workers), one per core.
  const int io_threads = std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
  for (int i = 0; i < io_threads; ++i) {
    impl->io_threads.emplace_back([io = &impl->io] {
      while (true) {
        try {
          io->run();
          return;
        } catch (const std::exception& e) {
          // A handler's failure ends that connection, never the server.
          kLog.Error("an I/O handler failed", {{"error", e.what()}});
        }
      }
    });
  }
  std::unique_ptr<HttpServer> s(new HttpServer(std::move(impl)));
  s->address_ = bound;
  return s;
}

void HttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  {
    MutexLock lock(impl_->shared->mu);
    impl_->shared->stopping = true;
  }
  asio::post(impl_->accept_strand, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    impl->accept_retry.cancel();
  });
  // Connections waiting for a request are closed; busy ones answer with Connection: close.
  std::vector<std::shared_ptr<Connection>> waiting;
  {
    MutexLock lock(impl_->shared->mu);
    for (auto& w : impl_->shared->waiting) {
      if (auto c = w.lock()) waiting.push_back(std::move(c));
    }
    for (auto& c : waiting) c->ForgetWaitingLocked();
  }
  for (auto& c : waiting) c->Close();
  waiting.clear();
  {
    // Requests being handled finish (up to 30 s) and their answers go out.
    InFlight& in_flight = impl_->shared->in_flight;
    MutexLock lock(in_flight.mu);
    in_flight.idle.wait_for(lock.native(), std::chrono::seconds(30),
                            [&]() REQUIRES(in_flight.mu) { return in_flight.count == 0; });
  }
  impl_->io.stop();
  for (std::thread& t : impl_->io_threads) t.join();
  impl_->workers->Stop();  // nothing new starts; a handler still running is waited for
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace treaty::http
