#include "bench/load.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/json_text.h"

namespace treaty::bench {
namespace {

using Clock = std::chrono::steady_clock;

// One keep-alive connection; reconnects after a failure.
class Connection {
 public:
  explicit Connection(const std::string& base) {
    Poco::URI uri(base);
    host_ = uri.getHost();
    port_ = uri.getPort();
  }

  // The HTTP status (0 when the call failed) and the body.
  int Post(const std::string& path, const std::string& body, std::string* out, std::string* error) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      try {
        if (!session_) {
          session_ = std::make_unique<Poco::Net::HTTPClientSession>(host_, port_);
          session_->setKeepAlive(true);
          session_->setTimeout(Poco::Timespan(120, 0));
        }
        Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_POST, path,
                                   Poco::Net::HTTPMessage::HTTP_1_1);
        req.setContentType("application/json");
        req.setContentLength(static_cast<std::streamsize>(body.size()));
        req.setKeepAlive(true);
        session_->sendRequest(req) << body;
        Poco::Net::HTTPResponse resp;
        std::istream& in = session_->receiveResponse(resp);
        out->clear();
        Poco::StreamCopier::copyToString(in, *out);
        return static_cast<int>(resp.getStatus());
      } catch (const Poco::Exception& e) {
        session_.reset();
        *error = e.displayText();
      }
    }
    return 0;
  }

 private:
  std::string host_;
  uint16_t port_ = 0;
  std::unique_ptr<Poco::Net::HTTPClientSession> session_;
};

std::string Branch(const LoadSpec& s, int i) {
  const std::string id = "b" + std::to_string(i);
  const std::string p = s.participant + "/" + s.mode + "/";
  if (s.mode == "2pc") {
    return R"({"id":")" + id + R"(","prepare":")" + p + R"(prepare","commit":")" + p +
           R"(commit","abort":")" + p + R"(abort","payload":{"sku":"A1","qty":1}})";
  }
  if (s.mode == "tcc") {
    return R"({"id":")" + id + R"(","try":")" + p + R"(try","confirm":")" + p +
           R"(confirm","cancel":")" + p + R"(cancel","payload":{"sku":"A1","qty":1}})";
  }
  // saga: a chain, each step after the one before.
  std::string after = i > 1 ? R"(,"after":["b)" + std::to_string(i - 1) + R"("])" : "";
  return R"({"id":")" + id + R"(","action":")" + p + R"(action","compensate":")" + p +
         R"(compensate","payload":{"sku":"A1","qty":1})" + after + "}";
}

// One transaction (or, for "http", one request) from start to outcome; true when committed.
bool RunOne(const LoadSpec& s, const std::string& gid, Connection& treatyd, Connection& direct,
            std::string* error) {
  std::string out;
  if (s.mode == "http") {
    int st = direct.Post(
        "/2pc/prepare",
        R"({"gid":")" + gid + R"(","branch_id":"b1","op":"prepare","mode":"2pc","payload":{}})",
        &out, error);
    if (st != 200) *error = "HTTP " + std::to_string(st) + " " + out + " " + *error;
    return st == 200;
  }
  if (s.mode == "msg") {
    std::string begin = R"({"gid":")" + gid + R"(","mode":"msg","query":")" + s.participant +
                        R"(/msg/query","messages":[{"topic":"bench.msg","key":")" + gid +
                        R"(","payload":{"order":")" + gid + R"(","qty":1}}]})";
    int st = treatyd.Post("/v1/transactions", begin, &out, error);
    if (st != 201) {
      *error = "begin: HTTP " + std::to_string(st) + " " + out + " " + *error;
      return false;
    }
    st = treatyd.Post("/v1/transactions/" + gid + "/submit", R"({"wait":true})", &out, error);
    if (st != 200 || out.find("\"status\":\"committed\"") == std::string::npos) {
      *error = "submit: HTTP " + std::to_string(st) + " " + out + " " + *error;
      return false;
    }
    return true;
  }
  std::string body =
      R"({"gid":")" + gid + R"(","mode":")" + s.mode + R"(","wait":true,"branches":[)";
  for (int i = 1; i <= s.branches; ++i) body += (i > 1 ? "," : "") + Branch(s, i);
  body += "]}";
  int st = treatyd.Post("/v1/transactions", body, &out, error);
  if (st != 200 || out.find("\"status\":\"committed\"") == std::string::npos) {
    *error = "HTTP " + std::to_string(st) + " " + out + " " + *error;
    return false;
  }
  return true;
}

double Percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t i =
      std::min(sorted.size() - 1, static_cast<size_t>(q * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[i]) / 1000.0;
}

}  // namespace

LoadResult RunLoad(const LoadSpec& spec) {
  enum Phase { kWarmup, kMeasure, kStop };
  std::atomic<int> phase{kWarmup};
  std::mutex mu;
  LoadResult result;
  std::vector<int64_t> latencies;
  std::vector<std::thread> clients;
  for (int c = 0; c < spec.clients; ++c) {
    clients.emplace_back([&, c] {
      Connection treatyd(spec.treatyd.empty() ? spec.participant : spec.treatyd);
      Connection direct(spec.participant);
      std::vector<int64_t> mine;
      int64_t errors = 0;
      std::string first_error;
      for (int64_t n = 0; phase.load() != kStop; ++n) {
        std::string gid = spec.run_id + "-" + std::to_string(c) + "-" + std::to_string(n);
        std::string error;
        auto started = Clock::now();
        bool ok = RunOne(spec, gid, treatyd, direct, &error);
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started);
        if (!ok) {
          ++errors;
          if (first_error.empty()) first_error = error;
        } else if (phase.load() == kMeasure) {
          mine.push_back(us.count());
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
      result.errors += errors;
      if (result.first_error.empty()) result.first_error = first_error;
    });
  }
  std::this_thread::sleep_for(spec.warmup);
  phase = kMeasure;
  auto started = Clock::now();
  std::this_thread::sleep_for(spec.measure);
  phase = kStop;
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  for (auto& t : clients) t.join();
  std::sort(latencies.begin(), latencies.end());
  result.completed = static_cast<int64_t>(latencies.size());
  result.tps = static_cast<double>(result.completed) / result.seconds;
  result.p50_ms = Percentile(latencies, 0.50);
  result.p99_ms = Percentile(latencies, 0.99);
  result.max_ms = latencies.empty() ? 0 : static_cast<double>(latencies.back()) / 1000.0;
  return result;
}

std::string ToJson(const LoadSpec& spec, const LoadResult& r) {
  std::ostringstream o;
  o.precision(6);
  auto q = [](const std::string& s) { return JsonQuote(s); };
  o << "{\"mode\":" << q(spec.mode) << ",\"clients\":" << spec.clients
    << ",\"branches\":" << spec.branches << ",\"completed\":" << r.completed
    << ",\"seconds\":" << r.seconds << ",\"tps\":" << r.tps << ",\"p50_ms\":" << r.p50_ms
    << ",\"p99_ms\":" << r.p99_ms << ",\"max_ms\":" << r.max_ms << ",\"errors\":" << r.errors
    << ",\"first_error\":" << q(r.first_error.substr(0, 300)) << "}";
  return o.str();
}

}  // namespace treaty::bench
