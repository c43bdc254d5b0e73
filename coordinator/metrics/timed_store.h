#pragma once

// A TransactionStore that times every call of the store it wraps and reports it to
// TreatyMetrics (treaty_store_call_seconds{op}): the store latency an operator watches. The
// results are passed through untouched.

#include "coordinator/core/store.h"
#include "coordinator/metrics/treaty_metrics.h"

namespace treaty::metrics {

class TimedStore : public core::TransactionStore {
 public:
  // `inner` and `metrics` must outlive this. Thread-safe as `inner` is.
  TimedStore(core::TransactionStore& inner, TreatyMetrics& metrics)
      : inner_(inner), metrics_(metrics) {}

  Result<core::CreateResult> Create(const core::Transaction& tx, const std::string& owner,
                                    Duration lease) override;
  Result<core::Transaction> Load(const std::string& gid, bool with_log) override;
  Status AddBranch(const std::string& gid, const std::vector<core::BranchOp>& ops) override;
  Status MarkSubmitted(const std::string& gid, core::TimePoint now) override;
  Status Transition(const std::string& gid, core::TxStatus from, core::TxStatus to,
                    const std::string& reason, core::TimePoint now,
                    const std::vector<core::BranchOp>& ops, const core::Fence* fence) override;
  Status RecordOps(const std::string& gid, const std::vector<core::BranchOp>& ops,
                   core::TimePoint now, const core::Fence& fence) override;
  Status SetAttention(const std::string& gid, const std::string& attention,
                      const core::Fence* fence) override;
  Status Reschedule(const std::string& gid, const std::string& owner,
                    core::TimePoint next_attempt_at) override;
  Status MakeDue(const std::string& gid, core::TimePoint now) override;
  Status Force(const std::string& gid, core::TxStatus from, core::TxStatus to,
               const std::string& reason, const std::string& actor, core::TimePoint now) override;
  Result<std::vector<std::string>> ClaimDue(const std::string& owner, core::TimePoint now,
                                            Duration lease, int limit) override;
  Result<bool> TryLease(const std::string& gid, const std::string& owner, Duration lease) override;
  Status ReleaseLeases(const std::string& node) override;
  Result<core::ListPage> List(const core::ListFilter& filter) override;
  Result<core::StatusCounts> CountByStatus() override;

 private:
  template <typename Fn>
  auto Timed(const char* op, Fn&& fn) {
    auto began = std::chrono::steady_clock::now();
    auto result = fn();
    metrics_.OnStoreCall(
        op, std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    return result;
  }

  core::TransactionStore& inner_;
  TreatyMetrics& metrics_;
};

}  // namespace treaty::metrics
