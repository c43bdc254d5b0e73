#pragma once

// 2PC with presumed abort (the flow in two_phase_flow.h, with prepare / commit / abort).
//
// Prepares run in parallel and are retried with backoff while their outcome is unknown, until
// the deadline. The decision is durable before any commit or abort is sent. Commits and aborts
// are retried until each succeeds; a 409 there is a participant bug, flagged for attention and
// still retried. Aborts go to every branch of a submitted transaction, since any prepare may
// have reached its participant (even one whose call a crash cut short), so that a participant
// rolls it back and refuses a late prepare; before submit nothing was sent and nothing is aborted.

#include "coordinator/core/processor.h"

namespace treaty::core {

class TwoPhaseCommitProcessor : public Processor {
 public:
  Mode mode() const override { return Mode::k2pc; }
  const std::vector<std::string>& BranchOps() const override;
  const std::vector<std::string>& RequiredOps(bool) const override { return BranchOps(); }
  Status Drive(Transaction& tx, DriveContext& ctx) override;
};

}  // namespace treaty::core
