#pragma once

// treatyd's driver observer for the log: every state change at info level with its gid, mode,
// previous status, reason and trace id; every interrupted drive (which the driver retries) at warn
// level. Stateless, so thread-safe.

#include <string>

#include "coordinator/core/transaction_driver.h"

namespace treaty {

class LoggingObserver : public core::DriverObserver {
 public:
  void OnTransition(const core::Transaction& tx, core::TxStatus from,
                    const std::string& reason) override;
  void OnDriveError(const std::string& gid, const Status& status) override;
  // At debug level: each transaction begun and each branch call, with its trace id.
  void OnStarted(const core::Transaction& tx) override;
  void OnCall(const core::Transaction& tx, const core::BranchOp& op,
              const core::BranchReply& reply) override;
};

}  // namespace treaty
