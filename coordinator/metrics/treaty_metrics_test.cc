#include "coordinator/metrics/treaty_metrics.h"

#include <gtest/gtest.h>

namespace treaty::metrics {
namespace {

core::Transaction Tx(core::Mode mode, core::TxStatus status) {
  core::Transaction tx;
  tx.gid = "secret-gid-123";
  tx.mode = mode;
  tx.status = status;
  return tx;
}

TEST(TreatyMetrics, CountsByModeOpAndOutcomeWithoutGids) {
  TreatyMetrics m(nullptr);
  m.OnStarted(Tx(core::Mode::k2pc, core::TxStatus::kActive));
  m.OnStarted(Tx(core::Mode::k2pc, core::TxStatus::kActive));
  m.OnStarted(Tx(core::Mode::kSaga, core::TxStatus::kActive));
  m.OnTransition(Tx(core::Mode::k2pc, core::TxStatus::kCommitting), core::TxStatus::kActive, "");
  m.OnTransition(Tx(core::Mode::k2pc, core::TxStatus::kCommitted), core::TxStatus::kCommitting, "");
  core::BranchOp op;
  op.op = "prepare";
  op.url = "http://secret-host/prepare";
  m.OnCall(
      Tx(core::Mode::k2pc, core::TxStatus::kActive), op,
      core::BranchReply{core::BranchReply::Outcome::kDone, 200, "", std::chrono::milliseconds(3)});
  m.OnCall(Tx(core::Mode::k2pc, core::TxStatus::kActive), op,
           core::BranchReply{core::BranchReply::Outcome::kUnknown, 503, "",
                             std::chrono::milliseconds(700)});
  m.OnRetryScheduled(Tx(core::Mode::k2pc, core::TxStatus::kActive));
  std::string text = m.Render([] {
    return Result<StoreGauges>(StoreGauges{{{"committing", 4}}, 2.5});
  });
  for (const char* line : {
           "treaty_transactions_started_total{mode=\"2pc\"} 2\n",
           "treaty_transactions_started_total{mode=\"saga\"} 1\n",
           "treaty_transactions_finished_total{mode=\"2pc\",outcome=\"committed\"} 1\n",
           "treaty_branch_calls_total{mode=\"2pc\",op=\"prepare\",outcome=\"done\"} 1\n",
           "treaty_branch_calls_total{mode=\"2pc\",op=\"prepare\",outcome=\"unknown\"} 1\n",
           "treaty_branch_call_seconds_bucket{mode=\"2pc\",op=\"prepare\",le=\"0.005\"} 1\n",
           "treaty_branch_call_seconds_bucket{mode=\"2pc\",op=\"prepare\",le=\"1\"} 2\n",
           "treaty_branch_call_seconds_count{mode=\"2pc\",op=\"prepare\"} 2\n",
           "treaty_retries_scheduled_total{mode=\"2pc\"} 1\n",
           "treaty_transactions_in_flight{status=\"committing\"} 4\n",
           "treaty_transactions_in_flight{status=\"active\"} 0\n",
           "treaty_recovery_lag_seconds 2.5\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\nin:\n" << text;
  }
  EXPECT_EQ(text.find("secret"), std::string::npos) << "no gid or URL in labels";
}

TEST(TreatyMetrics, CountsPurgedRowsByTableAndShowsTheOldestKept) {
  TreatyMetrics m(nullptr);
  std::string before = m.Render([] { return Result<StoreGauges>(StoreGauges{}); });
  EXPECT_NE(before.find("treaty_retention_purged_rows_total{table=\"transactions\"} 0\n"),
            std::string::npos)
      << before;
  m.OnPurged("transactions", 1000);
  m.OnPurged("decision_log", 3000);
  m.OnPurged("transactions", 7);
  std::string text = m.Render([] {
    StoreGauges g;
    g.oldest_finished_age_seconds = 86400.5;
    return Result<StoreGauges>(g);
  });
  for (const char* line : {
           "treaty_retention_purged_rows_total{table=\"transactions\"} 1007\n",
           "treaty_retention_purged_rows_total{table=\"decision_log\"} 3000\n",
           "treaty_retention_oldest_finished_age_seconds 86400.5\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\nin:\n" << text;
  }
}

TEST(TreatyMetrics, AStoreOutageStillRendersTheCounters) {
  TreatyMetrics m(nullptr);
  std::string text = m.Render([] { return Result<StoreGauges>(Status::Unavailable("db down")); });
  EXPECT_NE(text.find("# store gauges unavailable: db down"), std::string::npos);
  EXPECT_NE(text.find("treaty_drive_errors_total 0"), std::string::npos);
}

}  // namespace
}  // namespace treaty::metrics
