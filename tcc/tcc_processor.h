#pragma once

// TCC: try / confirm / cancel (the flow in two_phase_flow.h).
//
// Submitted whole, Treaty calls every branch's try (in parallel, or one after another when the
// request says "sequential"), then confirm on all, or cancel on all. Client-driven, the client
// begins, registers each branch with its confirm and cancel URLs, then runs that branch's try
// (registered first, a try whose client dies is still cancelled), and submits
// (confirm all) or aborts (cancel all); a transaction never submitted before its deadline is
// cancelled the same way, since the client's tries may have run. Cancel goes to every branch:
// a participant's barrier turns a cancel without a try into nothing (null compensation) and
// refuses the try that arrives after it (no hanging). Confirm and cancel are retried until they
// succeed; a 409 from either is a participant bug, flagged for attention and retried.

#include "coordinator/core/processor.h"

namespace treaty::core {

class TccProcessor : public Processor {
 public:
  Mode mode() const override { return Mode::kTcc; }
  // try, confirm, cancel.
  const std::vector<std::string>& BranchOps() const override;
  // All three; registered: confirm and cancel (the client ran the try).
  const std::vector<std::string>& RequiredOps(bool registered) const override;
  // "sequential": the tries run one after another, in the order given.
  const std::vector<std::string>& RequestFields() const override;
  Status Plan(const BeginRequest& request, const PlanDefaults& defaults,
              Transaction& tx) const override;
  Status Drive(Transaction& tx, DriveContext& ctx) override;
};

}  // namespace treaty::core
