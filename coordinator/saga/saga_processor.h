#pragma once

// Sagas: steps with an action and a compensation, ordered as a DAG by "after".
//
//   active ──every action 2xx──► committed
//      └──an action 409, the deadline, a client abort──► aborting ──compensations 2xx──► aborted
//
// Forward, every step whose dependencies all succeeded runs, in parallel with the other ready
// ones; unknown outcomes are retried until the deadline. A 409 stops new steps from starting and
// compensates every compensable step, unless its own action was refused (a 409 means the
// participant changed nothing): not only those recorded as run, since a coordinator that lost
// its lease may have run one unrecorded or still send one late. The participant's barrier turns
// the compensation of a step that never ran into nothing and refuses its late action. Compensations
// run in reverse dependency order (a step's after every step that depends on it) and are retried
// until they succeed. A step without a compensate URL only goes forward: it is retried until it
// succeeds, its refusals do not abort the saga, and it is never compensated.

#include "coordinator/core/processor.h"
#include "coordinator/saga/step_payloads.h"

namespace treaty::core {

// A step's payload may use the outputs of the steps it depends on (directly or not); its
// compensation's payload also its own step's (null when that action's answer never came).
// A step's retry policy (BranchOp::retry) sets when it is called again, and for actions how
// many calls without a definite answer it gets before the saga gives up and compensates.
class SagaProcessor : public Processor {
 public:
  // `payloads` fills ${steps...} placeholders; it must outlive the processor.
  explicit SagaProcessor(const StepPayloads& payloads = JsonStepPayloads()) : payloads_(payloads) {}

  Mode mode() const override { return Mode::kSaga; }
  bool TakesOpPolicies() const override { return true; }
  // Also committed while active: the steps still to run are not called (an operator ran them
  // by hand, or gave them up). Never committed once compensation began.
  Status CanForce(const Transaction& tx, TxStatus to) const override;
  // action while active, compensate while aborting.
  std::vector<std::string> OpsDueIn(TxStatus status) const override;
  // action, compensate.
  const std::vector<std::string>& BranchOps() const override;
  // action (a step without compensate only goes forward).
  const std::vector<std::string>& RequiredOps(bool registered) const override;
  bool OrdersBranches() const override { return true; }
  // Submitted whole only; the steps' "after" must name steps and form no cycle.
  Status Plan(const BeginRequest& request, const PlanDefaults& defaults,
              Transaction& tx) const override;
  Status Drive(Transaction& tx, DriveContext& ctx) override;

 private:
  const StepPayloads& payloads_;
};

// Checks a saga's steps: every "after" names another step, and there is no cycle. Returns the
// first problem as InvalidArgument ("step X: after names unknown step Y" / "steps form a cycle:
// A -> B -> A").
Status CheckSagaGraph(const std::vector<std::pair<std::string, std::vector<std::string>>>& steps);

// Checks that a step's payload names only outputs it can have: of the steps it depends on,
// directly or through others (and its own, for a compensation's payload: `own_output`).
// `steps` as for CheckSagaGraph (already checked by it). InvalidArgument naming the step
// ("names the output of step X, which is not one it runs after").
Status CheckOutputReferences(
    const std::vector<std::pair<std::string, std::vector<std::string>>>& steps,
    const std::string& step, const std::string& payload, bool own_output);

}  // namespace treaty::core
