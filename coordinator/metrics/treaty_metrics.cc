#include "coordinator/metrics/treaty_metrics.h"

#include <chrono>
#include <cstdio>

namespace treaty::metrics {
namespace {

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

void Header(std::string& out, const char* name, const char* type, const char* help) {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

void TreatyMetrics::OnStarted(const core::Transaction& tx) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++started_[std::string(core::ModeName(tx.mode))];
  }
  if (next_) next_->OnStarted(tx);
}

void TreatyMetrics::OnTransition(const core::Transaction& tx, core::TxStatus from,
                                 const std::string& reason) {
  if (core::IsFinal(tx.status)) {
    traffic_.OnFinished(tx.status == core::TxStatus::kCommitted);
    std::lock_guard<std::mutex> lock(mu_);
    ++finished_[{std::string(core::ModeName(tx.mode)), std::string(core::StatusName(tx.status))}];
  }
  if (next_) next_->OnTransition(tx, from, reason);
}

void TreatyMetrics::OnDriveError(const std::string& gid, const Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++drive_errors_;
  }
  if (next_) next_->OnDriveError(gid, status);
}

void TreatyMetrics::OnCall(const core::Transaction& tx, const core::BranchOp& op,
                           const core::BranchReply& reply) {
  if (next_) next_->OnCall(tx, op, reply);
  const char* outcome = reply.outcome == core::BranchReply::Outcome::kDone      ? "done"
                        : reply.outcome == core::BranchReply::Outcome::kRefused ? "refused"
                                                                                : "unknown";
  std::string mode(core::ModeName(tx.mode));
  double seconds = std::chrono::duration<double>(reply.elapsed).count();
  traffic_.OnCall(reply.elapsed, reply.outcome == core::BranchReply::Outcome::kDone);
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_[{mode, op.op, outcome}];
  latency_[{mode, op.op}].Add(seconds);
}

void TreatyMetrics::Histogram::Add(double seconds) {
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++counts[i];
  }
  ++count;
  sum += seconds;
}

void TreatyMetrics::RenderHistogram(std::string& out, const std::string& name,
                                    const std::string& labels, const Histogram& h) {
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    out += name + "_bucket{" + labels + ",le=\"" + Num(kBuckets[i]) + "\"} " +
           std::to_string(h.counts[i]) + "\n";
  }
  out += name + "_bucket{" + labels + ",le=\"+Inf\"} " + std::to_string(h.count) + "\n";
  out += name + "_sum{" + labels + "} " + Num(h.sum) + "\n";
  out += name + "_count{" + labels + "} " + std::to_string(h.count) + "\n";
}

void TreatyMetrics::OnStoreCall(const char* op, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  store_latency_[op].Add(seconds);
}

void TreatyMetrics::OnPurged(const std::string& table, int64_t rows) {
  std::lock_guard<std::mutex> lock(mu_);
  purged_[table] += static_cast<uint64_t>(rows);
}

void TreatyMetrics::OnRetryScheduled(const core::Transaction& tx) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++retries_[std::string(core::ModeName(tx.mode))];
  }
  if (next_) next_->OnRetryScheduled(tx);
}

void TreatyMetrics::OnRejected() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++rejected_;
  }
  if (next_) next_->OnRejected();
}

std::string TreatyMetrics::Render(const std::function<Result<StoreGauges>()>& gauges) {
  auto began = std::chrono::steady_clock::now();
  Result<StoreGauges> g = gauges();
  double scrape = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  Header(out, "treaty_transactions_started_total", "counter", "Transactions begun, by mode.");
  for (const auto& [mode, n] : started_) {
    out += "treaty_transactions_started_total{mode=\"" + mode + "\"} " + std::to_string(n) + "\n";
  }
  Header(out, "treaty_transactions_finished_total", "counter",
         "Transactions that reached a final status, by mode and outcome.");
  for (const auto& [key, n] : finished_) {
    out += "treaty_transactions_finished_total{mode=\"" + key.first + "\",outcome=\"" + key.second +
           "\"} " + std::to_string(n) + "\n";
  }
  Header(out, "treaty_branch_calls_total", "counter",
         "Calls to participants (and message deliveries), by mode, op and outcome.");
  for (const auto& [key, n] : calls_) {
    out += "treaty_branch_calls_total{mode=\"" + std::get<0>(key) + "\",op=\"" + std::get<1>(key) +
           "\",outcome=\"" + std::get<2>(key) + "\"} " + std::to_string(n) + "\n";
  }
  Header(out, "treaty_branch_call_seconds", "histogram", "Participant call latency.");
  for (const auto& [key, h] : latency_) {
    RenderHistogram(out, "treaty_branch_call_seconds",
                    "mode=\"" + key.first + "\",op=\"" + key.second + "\"", h);
  }
  Header(out, "treaty_store_call_seconds", "histogram", "Store call latency, by kind of call.");
  for (const auto& [op, h] : store_latency_) {
    RenderHistogram(out, "treaty_store_call_seconds", "op=\"" + op + "\"", h);
  }
  Header(out, "treaty_retries_scheduled_total", "counter",
         "Times a transaction waited for a retry after a backoff, by mode.");
  for (const auto& [mode, n] : retries_) {
    out += "treaty_retries_scheduled_total{mode=\"" + mode + "\"} " + std::to_string(n) + "\n";
  }
  Header(out, "treaty_retention_purged_rows_total", "counter",
         "Rows the retention purge deleted, by table.");
  for (const auto& [table, n] : purged_) {
    out +=
        "treaty_retention_purged_rows_total{table=\"" + table + "\"} " + std::to_string(n) + "\n";
  }
  Header(out, "treaty_drive_errors_total", "counter",
         "Drives interrupted by the store or a conflict (retried).");
  out += "treaty_drive_errors_total " + std::to_string(drive_errors_) + "\n";
  Header(out, "treaty_rejected_total", "counter",
         "New transactions refused with 503 because too many waited for a worker.");
  out += "treaty_rejected_total " + std::to_string(rejected_) + "\n";
  if (g.ok()) {
    Header(out, "treaty_transactions_in_flight", "gauge", "Unfinished transactions, by status.");
    for (const char* status : {"active", "prepared", "committing", "aborting"}) {
      auto it = g->in_flight.find(status);
      out += std::string("treaty_transactions_in_flight{status=\"") + status + "\"} " +
             std::to_string(it == g->in_flight.end() ? 0 : it->second) + "\n";
    }
    Header(out, "treaty_recovery_lag_seconds", "gauge",
           "How long the oldest due, unfinished transaction has waited.");
    out += "treaty_recovery_lag_seconds " + Num(g->recovery_lag_seconds) + "\n";
    if (g->oldest_finished_age_seconds) {
      Header(out, "treaty_retention_oldest_finished_age_seconds", "gauge",
             "How long ago the oldest finished transaction kept last changed.");
      out += "treaty_retention_oldest_finished_age_seconds " +
             Num(*g->oldest_finished_age_seconds) + "\n";
    }
  } else {
    out += "# store gauges unavailable: " + g.status().message() + "\n";
  }
  Header(out, "treaty_store_scrape_seconds", "gauge", "How long reading the store's gauges took.");
  out += "treaty_store_scrape_seconds " + Num(scrape) + "\n";
  return out;
}

}  // namespace treaty::metrics
