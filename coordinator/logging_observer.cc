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
             {"reason", reason}});
}

void LoggingObserver::OnDriveError(const std::string& gid, const Status& status) {
  kLog.Warn("drive interrupted; will retry", {{"gid", gid}, {"error", status.ToString()}});
}

}  // namespace treaty
