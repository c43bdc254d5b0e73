#pragma once

// treatyd's metrics in Prometheus text format (GET /metrics). Counted from the driver's events
// (a DriverObserver), plus gauges read from the store at scrape time. Labels are mode, op,
// status and outcome only: never a gid or a URL (their cardinality is unbounded).
//
//   treaty_transactions_started_total{mode}
//   treaty_transactions_finished_total{mode,outcome}      outcome: committed | aborted
//   treaty_transactions_in_flight{status}                 from the store
//   treaty_branch_calls_total{mode,op,outcome}            outcome: done | refused | unknown
//   treaty_branch_call_seconds{mode,op} (histogram)
//   treaty_retries_scheduled_total{mode}
//   treaty_drive_errors_total
//   treaty_recovery_lag_seconds                           the oldest due, unfinished transaction
//   treaty_store_call_seconds{op} (histogram)             every store call (see TimedStore)
//   treaty_store_scrape_seconds                           how long the store's gauges took
//   treaty_retention_purged_rows_total{table}             table: transactions | decision_log
//   treaty_retention_oldest_finished_age_seconds          the oldest finished transaction kept
//
// The same events feed the last minutes' traffic, second by second (traffic.h), for the console.

#include <array>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

#include "coordinator/core/transaction_driver.h"
#include "coordinator/metrics/traffic.h"

namespace treaty::metrics {

// What the store reports at scrape time.
struct StoreGauges {
  std::map<std::string, int64_t> in_flight;  // status -> count
  double recovery_lag_seconds = 0;
  // How long ago the oldest finished transaction kept last changed (the retention purge keeps
  // it below retention.history plus a round); nullopt when it could not be read.
  std::optional<double> oldest_finished_age_seconds;
};

class TreatyMetrics : public core::DriverObserver {
 public:
  // `next` (may be null) also receives every event (the log observer).
  explicit TreatyMetrics(core::DriverObserver* next) : next_(next) {}

  void OnStarted(const core::Transaction& tx) override;
  void OnTransition(const core::Transaction& tx, core::TxStatus from,
                    const std::string& reason) override;
  void OnDriveError(const std::string& gid, const Status& status) override;
  void OnCall(const core::Transaction& tx, const core::BranchOp& op,
              const core::BranchReply& reply) override;
  void OnRetryScheduled(const core::Transaction& tx) override;
  void OnRejected() override;
  // One store call of kind `op` ("transition", "load", ...) took `seconds`.
  void OnStoreCall(const char* op, double seconds);
  // The retention purge deleted `rows` rows of `table` ("transactions", "decision_log").
  void OnPurged(const std::string& table, int64_t rows);

  // The text for one scrape; `gauges` reads the store (its failure is reported as a comment).
  std::string Render(const std::function<Result<StoreGauges>()>& gauges);

  // The last minutes, second by second (GET /v1/stats/traffic).
  Traffic& traffic() { return traffic_; }

 private:
  static constexpr std::array<double, 10> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,  0.1,    0.25,  1,    5};
  struct Histogram {
    std::array<uint64_t, kBuckets.size()> counts{};
    uint64_t count = 0;
    double sum = 0;
    void Add(double seconds);
  };
  static void RenderHistogram(std::string& out, const std::string& name, const std::string& labels,
                              const Histogram& h);

  core::DriverObserver* next_;
  Traffic traffic_;
  std::mutex mu_;
  std::map<std::string, uint64_t> started_;                           // mode
  std::map<std::pair<std::string, std::string>, uint64_t> finished_;  // mode, outcome
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t>
      calls_;                                                         // mode, op, outcome
  std::map<std::pair<std::string, std::string>, Histogram> latency_;  // mode, op
  std::map<std::string, uint64_t> retries_;                           // mode
  std::map<std::string, Histogram> store_latency_;                    // op
  std::map<std::string, uint64_t> purged_ = {{"decision_log", 0}, {"transactions", 0}};  // table
  uint64_t drive_errors_ = 0;
  uint64_t rejected_ = 0;
};

}  // namespace treaty::metrics
