#include "mqtx/msg_participant.h"

namespace treaty::participant {

bool MsgParticipant::CommitMark(pqxx::transaction_base& tx, const std::string& gid) {
  pqxx::result r = tx.exec_params(
      "INSERT INTO treaty_barrier (gid, branch_id, op, written_by) VALUES ($1, 'msg', 'commit', "
      "'commit') ON CONFLICT (gid, branch_id, op) DO NOTHING RETURNING 1",
      gid);
  if (!r.empty()) return true;
  pqxx::result by = tx.exec_params(
      "SELECT written_by FROM treaty_barrier WHERE gid = $1 AND branch_id = 'msg' AND op = "
      "'commit'",
      gid);
  return !by.empty() && by[0][0].as<std::string>() == "commit";
}

OpReply MsgParticipant::Query(pqxx::transaction_base& tx, const std::string& gid) {
  // Waits for a local transaction that holds the row; if there is none, the row says
  // "rolled back" from now on.
  tx.exec_params(
      "INSERT INTO treaty_barrier (gid, branch_id, op, written_by) VALUES ($1, 'msg', 'commit', "
      "'query') ON CONFLICT (gid, branch_id, op) DO NOTHING",
      gid);
  pqxx::result by = tx.exec_params(
      "SELECT written_by FROM treaty_barrier WHERE gid = $1 AND branch_id = 'msg' AND op = "
      "'commit'",
      gid);
  if (!by.empty() && by[0][0].as<std::string>() == "commit") return OpReply{200, "committed"};
  return OpReply{409, "rolled back"};
}

}  // namespace treaty::participant
