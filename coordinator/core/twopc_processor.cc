#include "coordinator/core/twopc_processor.h"

#include "coordinator/core/two_phase_flow.h"

namespace treaty::core {

const std::vector<std::string>& TwoPhaseCommitProcessor::BranchOps() const {
  static const std::vector<std::string> kOps = {"prepare", "commit", "abort"};
  return kOps;
}

Status TwoPhaseCommitProcessor::Drive(Transaction& tx, DriveContext& ctx) {
  static const TwoPhaseOps kOps{"prepare", "commit", "abort", "prepared",
                                /*cancel_unsubmitted=*/false};
  return DriveTwoPhase(tx, ctx, kOps);
}

}  // namespace treaty::core
