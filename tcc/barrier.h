#pragma once

// The participant barrier: makes a service's TCC and saga ops safe against the three classic
// faults of at-least-once delivery, inside the service's own PostgreSQL transaction:
//   - a repeated op is skipped (idempotency);
//   - a cancel (compensation) whose try (action) never ran does nothing (null compensation);
//   - a try (action) that arrives after its cancel does nothing (no hanging).
//
// How: table treaty_barrier, unique on (gid, branch_id, op). Each op first inserts its own row;
// a cancel first inserts the row of its try (the "origin" row) on the try's behalf. The
// business change runs only when the op's own row is new and, for a cancel, when the try's row
// was already there. The rows are written in the caller's transaction: they commit or roll back
// with the business change, never apart. A duplicate arriving while the first is still running
// waits on the row's lock, then sees it and is skipped.

#include <functional>
#include <pqxx/pqxx>
#include <string>

#include "participants/kit/protocol.h"

namespace treaty::participant {

class Barrier {
 public:
  // Creates treaty_barrier if missing.
  static const char* SchemaSql();

  enum class Outcome {
    kApplied,           // the business change ran
    kDuplicate,         // this op ran before: skipped
    kNullCompensation,  // a cancel without a try: nothing to undo (the try is now refused)
    kHanging,           // a try after its cancel: refused to run
  };
  static const char* OutcomeName(Outcome o);

  // Runs `change` in `tx` (the caller's open transaction, which the caller commits) unless the
  // barrier says to skip it: a duplicate or a null compensation answers 200, a hanging try 409.
  // `op` is the protocol op: "try", "confirm", "cancel", "action", "compensate". What `change`
  // returns is the answer when it ran (a 409 there means the caller must roll back instead of
  // committing: the barrier row goes with it).
  static OpReply Run(pqxx::work& tx, const BranchRequest& r,
                     const std::function<OpReply(pqxx::work&)>& change, Outcome* outcome = nullptr);
};

}  // namespace treaty::participant
