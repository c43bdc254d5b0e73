#include "coordinator/tracing/otlp_exporter.h"

#include <memory>

#include "common/http/http_client.h"
#include "common/json_text.h"
#include "common/log.h"
#include "coordinator/core/trace_context.h"

namespace treaty::tracing {
namespace {

const Logger kLog("otlp");

std::string Nanos(core::TimePoint t) {
  return std::to_string(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

std::string Attribute(const std::string& key, const std::string& value) {
  return R"({"key":)" + JsonQuote(key) + R"(,"value":{"stringValue":)" + JsonQuote(value) + "}}";
}

// A span id derived from the transaction's own span and `what` (a state, "begin"): unique within
// the trace without randomness of its own, and the same whichever treatyd makes it.
std::string DerivedSpanId(const std::string& span_id, std::string_view what) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (char c : span_id) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  for (char c : what) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  static const char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 0; i < 16; ++i) out[i] = kHex[(h >> (4 * i)) & 0xf];
  return out;
}

// The span of a whole transaction, and its ids, from what it stores.
Span Base(const core::Transaction& tx, std::string name) {
  Span s;
  s.trace_id = tx.context.trace_id;
  s.parent_span_id = tx.context.span_id;
  s.name = std::move(name);
  s.attributes = {{"treaty.gid", tx.gid}, {"treaty.mode", std::string(core::ModeName(tx.mode))}};
  return s;
}

}  // namespace

std::string OtlpJson(const std::vector<Span>& spans, const std::string& service_name) {
  std::string out = R"({"resourceSpans":[{"resource":{"attributes":[)" +
                    Attribute("service.name", service_name) +
                    R"(]},"scopeSpans":[{"scope":{"name":"treaty"},"spans":[)";
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span& s = spans[i];
    if (i > 0) out += ',';
    out += R"({"traceId":")" + s.trace_id + R"(","spanId":")" + s.span_id + '"';
    if (!s.parent_span_id.empty()) out += R"(,"parentSpanId":")" + s.parent_span_id + '"';
    out += R"(,"name":)" + JsonQuote(s.name) + R"(,"kind":)" + std::to_string(s.kind);
    out += R"(,"startTimeUnixNano":")" + Nanos(s.start) + R"(","endTimeUnixNano":")" +
           Nanos(s.end) + R"(","attributes":[)";
    for (size_t a = 0; a < s.attributes.size(); ++a) {
      if (a > 0) out += ',';
      out += Attribute(s.attributes[a].first, s.attributes[a].second);
    }
    out += R"(],"status":{"code":)" + std::string(s.error ? "2" : "1") + "}}";
  }
  out += "]}]}]}";
  return out;
}

OtlpExporter::OtlpExporter(OtlpOptions options, core::DriverObserver* next)
    : options_(std::move(options)), next_(next), thread_([this] { Run(); }) {}

OtlpExporter::~OtlpExporter() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void OtlpExporter::Enqueue(Span span) {
  if (span.trace_id.empty()) return;  // a transaction from before trace contexts were kept
  bool full_batch = false;
  {
    MutexLock lock(mu_);
    if (queue_.size() >= options_.max_queue) {
      ++dropped_;
      return;
    }
    queue_.push_back(std::move(span));
    full_batch = queue_.size() >= options_.max_batch;
  }
  if (full_batch) cv_.notify_all();
}

void OtlpExporter::OnStarted(const core::Transaction& tx) {
  if (next_) next_->OnStarted(tx);
  Span s = Base(tx, "treaty.begin");
  // Its own id: the transaction's span (tx.context.span_id) is sent when it ends.
  s.span_id = DerivedSpanId(tx.context.span_id, "begin");
  s.start = tx.created_at;
  s.end = Now();
  s.attributes.emplace_back("treaty.branches", std::to_string(tx.BranchIds().size()));
  Enqueue(std::move(s));
}

void OtlpExporter::OnTransition(const core::Transaction& tx, core::TxStatus from,
                                const std::string& reason) {
  if (next_) next_->OnTransition(tx, from, reason);
  const auto now = Now();
  const bool decision = tx.status == core::TxStatus::kCommitting ||
                        tx.status == core::TxStatus::kAborting ||
                        (core::IsFinal(tx.status) && from != core::TxStatus::kCommitting &&
                         from != core::TxStatus::kAborting);
  Span s = Base(tx, decision ? "treaty.decision" : "treaty.transition");
  s.span_id = DerivedSpanId(tx.context.span_id, core::StatusName(tx.status));
  s.start = s.end = now;
  s.attributes.emplace_back("treaty.from", std::string(core::StatusName(from)));
  s.attributes.emplace_back("treaty.to", std::string(core::StatusName(tx.status)));
  s.attributes.emplace_back("treaty.reason", reason);
  Enqueue(std::move(s));
  if (core::IsFinal(tx.status)) {
    Span whole = Base(tx, "treaty.transaction");
    whole.span_id = tx.context.span_id;
    whole.parent_span_id = tx.context.parent_span_id;
    whole.kind = 2;  // server: the starting request's
    whole.start = tx.created_at;
    whole.end = now;
    whole.error = tx.status == core::TxStatus::kAborted;
    whole.attributes.emplace_back("treaty.status", std::string(core::StatusName(tx.status)));
    Enqueue(std::move(whole));
  }
}

void OtlpExporter::OnDriveError(const std::string& gid, const Status& status) {
  if (next_) next_->OnDriveError(gid, status);
}

void OtlpExporter::OnCall(const core::Transaction& tx, const core::BranchOp& op,
                          const core::BranchReply& reply) {
  if (next_) next_->OnCall(tx, op, reply);
  if (reply.span_id.empty()) return;
  Span s = Base(tx, "treaty." + op.op);
  s.span_id = reply.span_id;
  s.kind = 3;  // client
  s.start = op.calls.empty() ? Now() : op.calls.back().started;
  s.end = s.start + std::chrono::duration_cast<core::TimePoint::duration>(reply.elapsed);
  const char* outcome = reply.outcome == core::BranchReply::Outcome::kDone      ? "done"
                        : reply.outcome == core::BranchReply::Outcome::kRefused ? "refused"
                                                                                : "unknown";
  s.error = reply.outcome == core::BranchReply::Outcome::kUnknown;
  s.attributes.emplace_back("treaty.branch_id", op.branch_id);
  s.attributes.emplace_back("treaty.op", op.op);
  s.attributes.emplace_back("treaty.outcome", outcome);
  if (reply.http_status != 0) {
    s.attributes.emplace_back("http.status_code", std::to_string(reply.http_status));
  }
  if (!op.url.empty()) s.attributes.emplace_back("url.full", op.url);
  if (!op.topic.empty()) s.attributes.emplace_back("messaging.destination.name", op.topic);
  Enqueue(std::move(s));
}

void OtlpExporter::OnRetryScheduled(const core::Transaction& tx) {
  if (next_) next_->OnRetryScheduled(tx);
}

void OtlpExporter::OnRejected() {
  if (next_) next_->OnRejected();
}

void OtlpExporter::Run() {
  while (true) {
    std::vector<Span> batch;
    bool stopping = false;
    {
      MutexLock lock(mu_);
      cv_.wait_for(lock.native(), options_.flush_interval, [this]() REQUIRES(mu_) {
        return stopping_ || queue_.size() >= options_.max_batch;
      });
      stopping = stopping_;
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (!batch.empty()) {
      const bool sent = Send(batch);
      MutexLock lock(mu_);
      (sent ? exported_ : failed_) += batch.size();
    }
    if (stopping) return;  // what is left once stopping is dropped: one batch at most is sent
  }
}

bool OtlpExporter::Send(const std::vector<Span>& batch) {
  // https: the collector's certificate is verified against the system's CAs.
  auto reply = http::HttpCall("POST", options_.endpoint, OtlpJson(batch, options_.service_name),
                              http::CallOptions{.timeout = options_.timeout});
  if (!reply.ok()) {
    Failed(reply.status().message());
    return false;
  }
  if (reply->status / 100 != 2) {
    Failed("HTTP " + std::to_string(reply->status));
    return false;
  }
  if (failing_) kLog.Info("span export works again", {{"endpoint", options_.endpoint}});
  failing_ = false;
  return true;
}

void OtlpExporter::Failed(const std::string& error) {
  // Once per outage, not once per batch: a dead collector must not fill the log either.
  if (!failing_) {
    kLog.Warn(
        "span export failed; spans are dropped until it works again (see "
        "treaty_spans_failed_total)",
        {{"endpoint", options_.endpoint}, {"error", error}});
  }
  failing_ = true;
}

std::string OtlpExporter::RenderMetrics() {
  MutexLock lock(mu_);
  std::string out;
  out += "# HELP treaty_spans_exported_total Spans the OTLP collector accepted.\n";
  out += "# TYPE treaty_spans_exported_total counter\n";
  out += "treaty_spans_exported_total " + std::to_string(exported_) + "\n";
  out += "# HELP treaty_spans_dropped_total Spans dropped: the export queue was full.\n";
  out += "# TYPE treaty_spans_dropped_total counter\n";
  out += "treaty_spans_dropped_total " + std::to_string(dropped_) + "\n";
  out += "# HELP treaty_spans_failed_total Spans lost in batches the collector did not accept.\n";
  out += "# TYPE treaty_spans_failed_total counter\n";
  out += "treaty_spans_failed_total " + std::to_string(failed_) + "\n";
  return out;
}

}  // namespace treaty::tracing
