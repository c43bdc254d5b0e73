#include "integration-tests/harness/recording_server.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/StreamCopier.h>

#include <cctype>
#include <sstream>

namespace treaty::harness {

class RecordingServer::Handler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit Handler(std::shared_ptr<State> state) : state_(std::move(state)) {}
  void handleRequest(Poco::Net::HTTPServerRequest& req,
                     Poco::Net::HTTPServerResponse& resp) override {
    RecordedRequest r;
    r.method = req.getMethod();
    r.path = req.getURI();
    for (const auto& [name, value] : req) {
      std::string lower = name;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[lower] = value;
    }
    std::ostringstream body;
    Poco::StreamCopier::copyStream(req.stream(), body);
    r.body = body.str();
    r.at = std::chrono::steady_clock::now();
    int status = 200;
    std::string answer;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->requests.push_back(std::move(r));
      status = state_->status;
      answer = state_->body;
      if (auto it = state_->by_path.find(state_->requests.back().path);
          it != state_->by_path.end()) {
        status = it->second.first;
        answer = it->second.second;
      }
    }
    state_->cv.notify_all();
    resp.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
    resp.setContentType("application/json");
    resp.setContentLength(static_cast<std::streamsize>(answer.size()));
    resp.send() << answer;
  }

 private:
  std::shared_ptr<State> state_;
};

class RecordingServer::Factory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit Factory(std::shared_ptr<State> state) : state_(std::move(state)) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new Handler(state_);
  }

 private:
  std::shared_ptr<State> state_;
};

struct RecordingServer::Impl {
  std::unique_ptr<Poco::Net::HTTPServer> server;
};

RecordingServer::RecordingServer(int port)
    : state_(std::make_shared<State>()), impl_(std::make_unique<Impl>()) {
  Poco::Net::ServerSocket socket(
      Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(port)), 64);
  port_ = socket.address().port();
  auto* params = new Poco::Net::HTTPServerParams();
  params->setMaxThreads(8);
  params->setKeepAlive(true);
  impl_->server = std::make_unique<Poco::Net::HTTPServer>(new Factory(state_), socket, params);
  impl_->server->start();
}

RecordingServer::~RecordingServer() { impl_->server->stopAll(/*abortCurrent=*/true); }

void RecordingServer::AnswerWith(int status, std::string body) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->status = status;
  state_->body = std::move(body);
}

void RecordingServer::AnswerPathWith(const std::string& path, int status, std::string body) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->by_path[path] = {status, std::move(body)};
}

std::vector<RecordedRequest> RecordingServer::Requests() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->requests;
}

bool RecordingServer::WaitFor(const std::function<bool(const std::vector<RecordedRequest>&)>& done,
                              std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(state_->mu);
  return state_->cv.wait_for(lock, timeout, [&] { return done(state_->requests); });
}

}  // namespace treaty::harness
