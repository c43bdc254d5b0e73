#include "coordinator/core/twopc_processor.h"

#include "common/protocol/protocol.h"
#include "coordinator/core/two_phase_flow.h"

namespace treaty::core {

const std::vector<std::string>& TwoPhaseCommitProcessor::BranchOps() const {
  static const std::vector<std::string> kOps = {protocol::kPrepare, protocol::kCommit,
                                                protocol::kAbort};
  return kOps;
}

Status TwoPhaseCommitProcessor::Drive(Transaction& tx, DriveContext& ctx) {
  static const TwoPhaseOps kOps{protocol::kPrepare, protocol::kCommit, protocol::kAbort, "prepared",
                                /*cancel_unsubmitted=*/false};
  return DriveTwoPhase(tx, ctx, kOps);
}

}  // namespace treaty::core
