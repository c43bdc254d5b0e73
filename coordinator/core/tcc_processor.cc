#include "coordinator/core/tcc_processor.h"

#include "coordinator/core/two_phase_flow.h"

namespace treaty::core {

const std::vector<std::string>& TccProcessor::BranchOps() const {
  static const std::vector<std::string> kOps = {"try", "confirm", "cancel"};
  return kOps;
}

const std::vector<std::string>& TccProcessor::RegisteredBranchOps() const {
  static const std::vector<std::string> kOps = {"confirm", "cancel"};
  return kOps;
}

Status TccProcessor::Drive(Transaction& tx, DriveContext& ctx) {
  static const TwoPhaseOps kOps{"try", "confirm", "cancel", "tried",
                                /*cancel_unsubmitted=*/true};
  return DriveTwoPhase(tx, ctx, kOps);
}

}  // namespace treaty::core
