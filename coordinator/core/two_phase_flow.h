#pragma once

// The shape 2PC and TCC share: a first phase on every branch (prepare / try) retried until each
// answers or the deadline passes; one durable decision; then a second phase (commit or abort /
// confirm or cancel) retried until every branch succeeded. The mode files (twopc_processor.cc,
// tcc_processor.cc) give the op names and the few rules where they differ.
//
//   active ──every first op 2xx──► committing ──every confirm 2xx──► committed
//      └──a first op 409, the deadline, a client abort──► aborting ──every cancel 2xx──► aborted

#include <string>

#include "coordinator/core/processor.h"

namespace treaty::core {

struct TwoPhaseOps {
  std::string first;       // "prepare" / "try"
  std::string confirm;     // "commit" / "confirm"
  std::string cancel;      // "abort" / "cancel"
  std::string first_done;  // "prepared" / "tried", for reasons
  // Whether a transaction that was never submitted has anything to cancel: in 2PC nothing was
  // sent; in client-driven TCC the client ran its own tries.
  bool cancel_unsubmitted = false;
};

// Advances `tx` as far as it can now (see Processor::Drive).
Status DriveTwoPhase(Transaction& tx, DriveContext& ctx, const TwoPhaseOps& ops);

}  // namespace treaty::core
