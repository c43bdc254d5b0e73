#include "tcc/barrier.h"

#include "common/protocol/protocol.h"

namespace treaty::participant {
namespace {

// The op whose effect `op` undoes, or "" when `op` undoes nothing.
std::string OriginOf(const std::string& op) {
  if (op == protocol::kCancel) return protocol::kTry;
  if (op == protocol::kCompensate) return protocol::kAction;
  return "";
}

// True when the row was new.
bool InsertRow(pqxx::work& tx, const BranchRequest& r, const std::string& op,
               const std::string& by) {
  pqxx::result res = tx.exec_params(
      "INSERT INTO treaty_barrier (gid, branch_id, op, written_by) VALUES ($1, $2, $3, $4) "
      "ON CONFLICT (gid, branch_id, op) DO NOTHING RETURNING 1",
      r.gid, r.branch_id, op, by);
  return !res.empty();
}

}  // namespace

const char* Barrier::SchemaSql() {
  return "CREATE TABLE IF NOT EXISTS treaty_barrier ("
         " gid text NOT NULL, branch_id text NOT NULL, op text NOT NULL,"
         " written_by text NOT NULL,"
         " seq bigserial,"  // the order ops arrived in, for audits and tests
         " created_at timestamptz NOT NULL DEFAULT now(),"
         " PRIMARY KEY (gid, branch_id, op))";
}

const char* Barrier::OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kApplied:
      return "applied";
    case Outcome::kDuplicate:
      return "skipped: already done";
    case Outcome::kNullCompensation:
      return "skipped: nothing to undo (null compensation)";
    case Outcome::kHanging:
      return "skipped: cancelled before it arrived";
  }
  return "applied";
}

OpReply Barrier::Run(pqxx::work& tx, const BranchRequest& r,
                     const std::function<OpReply(pqxx::work&)>& change, Outcome* outcome) {
  Outcome result = Outcome::kApplied;
  std::string origin = OriginOf(r.op);
  // For a cancel: write the try's row first. If it was not there, the try never ran: nothing to
  // undo, and the row now stops a late try.
  bool origin_was_missing = !origin.empty() && InsertRow(tx, r, origin, r.op);
  bool own_row_new = InsertRow(tx, r, r.op, r.op);
  if (!own_row_new) {
    // Either this op ran before, or (for a try) its cancel wrote this row first.
    pqxx::result by = tx.exec_params(
        "SELECT written_by FROM treaty_barrier WHERE gid = $1 AND branch_id = $2 AND op = $3",
        r.gid, r.branch_id, r.op);
    bool written_by_cancel = !by.empty() && by[0][0].as<std::string>() != r.op;
    result = written_by_cancel ? Outcome::kHanging : Outcome::kDuplicate;
  } else if (origin_was_missing) {
    result = Outcome::kNullCompensation;
  }
  if (outcome) *outcome = result;
  // A try refused for hanging is a 409: its transaction was cancelled (a client running its own
  // tries learns that it is too late). The rest of the skips are 2xx: the op's effect stands.
  if (result == Outcome::kHanging) return OpReply{409, OutcomeName(result)};
  if (result != Outcome::kApplied) return OpReply{200, OutcomeName(result)};
  return change(tx);
}

}  // namespace treaty::participant
