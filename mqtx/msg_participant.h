#pragma once

// The service side of transactional messages:
//
//   1. Prepare: POST the half message(s) to treatyd with this service's query URL.
//   2. Run the local transaction, and in it CommitMark(): a row in treaty_barrier saying "this
//      transaction committed locally". Commit.
//   3. Submit: POST /v1/transactions/{gid}/submit.
//
// If the service dies between 2 and 3 (or before 2), treatyd checks back: Query() answers from
// that row: there, the local transaction committed (2xx); missing, it inserts the row itself as
// "rolled back" first, so a local commit still in flight or coming late fails on it (409) and the
// answer cannot change afterwards. The row's insert and the check are serialized by its key.

#include <pqxx/pqxx>
#include <string>

#include "common/status.h"
#include "participants/kit/protocol.h"

namespace treaty::participant {

class MsgParticipant {
 public:
  // In the service's local transaction: marks it committed. False when the check-back already
  // decided "rolled back" (the caller must roll back, the transaction is over).
  static bool CommitMark(pqxx::transaction_base& tx, const std::string& gid);

  // The check-back answer for `gid`, run in `tx` (the caller commits it): 200 committed, 409
  // rolled back (recorded so, for good).
  static OpReply Query(pqxx::transaction_base& tx, const std::string& gid);
};

}  // namespace treaty::participant
