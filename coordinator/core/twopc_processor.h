#pragma once

// 2PC with presumed abort.
//
//   active ──all prepares 2xx──► committing ──all commits 2xx──► committed
//      └──any prepare 409, deadline passed, client abort──► aborting ──aborts 2xx──► aborted
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
  Status Drive(Transaction& tx, DriveContext& ctx) override;

 private:
  Status DriveActive(Transaction& tx, DriveContext& ctx, bool* waiting);
  // Phase two: calls `op` on every branch in `targets` until each succeeded, then moves to
  // `final_status`.
  Status DrivePhaseTwo(Transaction& tx, DriveContext& ctx, const std::string& op,
                       const std::vector<size_t>& targets, TxStatus final_status,
                       const std::string& done_reason, bool* waiting);
};

}  // namespace treaty::core
