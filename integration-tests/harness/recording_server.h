#pragma once

// A small HTTP server inside the test process that records every request it receives and answers
// each with a set status (200 "{}" unless told otherwise): a participant whose calls a test
// inspects (the headers treatyd sends), an OTLP collector, a webhook receiver. Real HTTP over
// loopback from real treatyd processes. Thread-safe.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace treaty::harness {

struct RecordedRequest {
  std::string method;
  std::string path;                            // with the query string
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  std::chrono::steady_clock::time_point at;
};

class RecordingServer {
 public:
  // Listens on 127.0.0.1 at a free port (or `port` when not 0).
  explicit RecordingServer(int port = 0);
  ~RecordingServer();
  RecordingServer(const RecordingServer&) = delete;
  RecordingServer& operator=(const RecordingServer&) = delete;

  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // The status (and body) every later request is answered with.
  void AnswerWith(int status, std::string body = "{}");
  // The status (and body) later requests to exactly `path` are answered with, whatever
  // AnswerWith says.
  void AnswerPathWith(const std::string& path, int status, std::string body = "{}");

  std::vector<RecordedRequest> Requests() const;
  // Waits until `done` holds for the requests received so far, or `timeout` passes; returns
  // whether it held.
  bool WaitFor(const std::function<bool(const std::vector<RecordedRequest>&)>& done,
               std::chrono::milliseconds timeout = std::chrono::seconds(60));

 private:
  class Handler;
  class Factory;
  struct State {
    mutable std::mutex mu;
    std::condition_variable cv;
    std::vector<RecordedRequest> requests;
    int status = 200;
    std::string body = "{}";
    std::map<std::string, std::pair<int, std::string>> by_path;
  };
  std::shared_ptr<State> state_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace treaty::harness
