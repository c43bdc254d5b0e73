#include "tcc/tcc_processor.h"

#include "common/protocol/protocol.h"
#include "coordinator/core/two_phase_flow.h"

namespace treaty::core {

const std::vector<std::string>& TccProcessor::BranchOps() const {
  static const std::vector<std::string> kOps = {protocol::kTry, protocol::kConfirm,
                                                protocol::kCancel};
  return kOps;
}

const std::vector<std::string>& TccProcessor::RequiredOps(bool registered) const {
  static const std::vector<std::string> kRegistered = {protocol::kConfirm, protocol::kCancel};
  return registered ? kRegistered : BranchOps();
}

const std::vector<std::string>& TccProcessor::RequestFields() const {
  static const std::vector<std::string> kFields = {"sequential"};
  return kFields;
}

Status TccProcessor::Plan(const BeginRequest& request, const PlanDefaults& defaults,
                          Transaction& tx) const {
  if (Status s = Processor::Plan(request, defaults, tx); !s.ok()) return s;
  tx.sequential = request.sequential.value_or(false);
  return Status::Ok();
}

Status TccProcessor::Drive(Transaction& tx, DriveContext& ctx) {
  static const TwoPhaseOps kOps{protocol::kTry, protocol::kConfirm, protocol::kCancel, "tried",
                                /*cancel_unsubmitted=*/true};
  return DriveTwoPhase(tx, ctx, kOps);
}

}  // namespace treaty::core
