#pragma once

// Exports a transaction's spans over OTLP/HTTP with the JSON encoding (POST <endpoint>, by
// default http://host:4318/v1/traces) to a collector, as a driver observer: the transaction's
// own span (from its creation to its end), a "begin" span, one span per branch call (its op,
// branch and outcome; the span id the participant received in traceparent) and one per state
// change (the decision among them).
//
// Bounded and never in the way: events become spans in a queue of at most max_queue spans;
// beyond it a span is dropped and counted. One background thread sends batches of at most
// max_batch spans, each call bounded by `timeout`; a batch the collector does not accept
// (refused, unreachable, slow) is dropped and counted. A dead collector thus costs treatyd one
// thread waiting on a socket and max_queue spans of memory at most. Thread-safe.

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/duration.h"
#include "common/thread_annotations.h"
#include "coordinator/core/transaction_driver.h"

namespace treaty::tracing {

struct OtlpOptions {
  std::string endpoint;  // the full URL of the collector's traces endpoint
  std::string service_name = "treatyd";
  size_t max_queue = 2048;
  size_t max_batch = 256;
  Duration flush_interval = std::chrono::seconds(1);  // a partial batch waits at most this long
  Duration timeout = std::chrono::seconds(2);         // one export call
  // The clock of the spans' times: the store's in treatyd, as the calls' own stamps (the core's
  // clock); null: this host's.
  core::Clock* clock = nullptr;
};

struct Span {
  std::string trace_id;
  std::string span_id;
  std::string parent_span_id;
  std::string name;
  int kind = 1;  // OTLP SpanKind: 1 internal, 3 client
  core::TimePoint start;
  core::TimePoint end;
  bool error = false;  // OTLP status: 2 (error) when set, else 1 (ok)
  std::vector<std::pair<std::string, std::string>> attributes;  // string values
};

// The OTLP/JSON body (ExportTraceServiceRequest) of `spans`.
std::string OtlpJson(const std::vector<Span>& spans, const std::string& service_name);

class OtlpExporter : public core::DriverObserver {
 public:
  // `next` (may be null) also receives every event.
  OtlpExporter(OtlpOptions options, core::DriverObserver* next);
  ~OtlpExporter() override;  // sends what is queued, within one timeout
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;

  void OnStarted(const core::Transaction& tx) override;
  void OnTransition(const core::Transaction& tx, core::TxStatus from,
                    const std::string& reason) override;
  void OnDriveError(const std::string& gid, const Status& status) override;
  void OnCall(const core::Transaction& tx, const core::BranchOp& op,
              const core::BranchReply& reply) override;
  void OnRetryScheduled(const core::Transaction& tx) override;
  void OnRejected() override;

  // Prometheus text: spans exported, dropped (queue full) and lost (export failed).
  std::string RenderMetrics();

 private:
  core::TimePoint Now() {
    return options_.clock != nullptr ? options_.clock->Now() : std::chrono::system_clock::now();
  }
  void Enqueue(Span span);
  void Run();
  bool Send(const std::vector<Span>& batch);
  void Failed(const std::string& error);

  const OtlpOptions options_;
  core::DriverObserver* next_;
  Mutex mu_;
  std::condition_variable cv_;
  std::deque<Span> queue_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  uint64_t exported_ GUARDED_BY(mu_) = 0;
  uint64_t dropped_ GUARDED_BY(mu_) = 0;  // the queue was full
  uint64_t failed_ GUARDED_BY(mu_) = 0;   // in batches the collector did not accept
  bool failing_ = false;                  // the last export failed; Run's thread only
  std::thread thread_;                    // last: started once the rest is built
};

}  // namespace treaty::tracing
