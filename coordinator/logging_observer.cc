#include "coordinator/logging_observer.h"

#include "common/log.h"

namespace treaty {
namespace {
const Logger kLog("treatyd");
}  // namespace

void LoggingObserver::OnTransition(const core::Transaction& tx, core::TxStatus from,
                                   const std::string& reason) {
  kLog.Info("transaction " + std::string(core::StatusName(tx.status)),
            {{"gid", tx.gid},
             {"mode", std::string(core::ModeName(tx.mode))},
             {"from", std::string(core::StatusName(from))},
             {"reason", reason},
             {"trace_id", tx.context.trace_id}});
}

void LoggingObserver::OnStarted(const core::Transaction& tx) {
  kLog.Debug("transaction begun", {{"gid", tx.gid},
                                   {"mode", std::string(core::ModeName(tx.mode))},
                                   {"trace_id", tx.context.trace_id}});
}

void LoggingObserver::OnCall(const core::Transaction& tx, const core::BranchOp& op,
                             const core::BranchReply& reply) {
  kLog.Debug("branch called", {{"gid", tx.gid},
                               {"branch_id", op.branch_id},
                               {"op", op.op},
                               {"outcome", std::string(core::OpStatusName(op.status))},
                               {"http_status", std::to_string(reply.http_status)},
                               {"trace_id", tx.context.trace_id}});
}

void LoggingObserver::OnDriveError(const std::string& gid, const Status& status) {
  kLog.Warn("drive interrupted; will retry", {{"gid", gid}, {"error", status.ToString()}});
}

}  // namespace treaty
