#include "participants/kit/twopc_resource.h"

#include "outbox/outbox.h"

namespace treaty::participant {
namespace {

bool PreparedExists(pqxx::nontransaction& sql, const std::string& name) {
  return !sql.exec_params(
                 "SELECT 1 FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()",
                 name)
              .empty();
}

// The branch's recorded state: "", "prepared" (committed, once visible), "committed", "aborted".
std::string StateOf(pqxx::nontransaction& sql, const BranchRequest& r) {
  pqxx::result res =
      sql.exec_params("SELECT state FROM treaty_2pc_branches WHERE gid = $1 AND branch_id = $2",
                      r.gid, r.branch_id);
  return res.empty() ? std::string() : res[0][0].as<std::string>();
}

OpReply Unavailable(const Status& s) { return OpReply{503, s.message()}; }

// COMMIT PREPARED / ROLLBACK PREPARED `name` if it still exists; a concurrent call may have
// finished it first, which is no error.
void FinishIfPrepared(pqxx::nontransaction& sql, const std::string& name, const char* verb) {
  if (!PreparedExists(sql, name)) return;
  try {
    sql.exec(std::string(verb) + " " + sql.quote(name));
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() != "42704") throw;  // 42704: no such prepared transaction any more
  }
}

}  // namespace

const char* TwoPhaseResource::SchemaSql() {
  return "CREATE TABLE IF NOT EXISTS treaty_2pc_branches ("
         " gid text NOT NULL, branch_id text NOT NULL,"
         " state text NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted')),"
         " updated_at timestamptz NOT NULL DEFAULT now(),"
         " PRIMARY KEY (gid, branch_id))";
}

std::string TwoPhaseResource::XactName(const std::string& gid, const std::string& branch_id) {
  return "treaty/" + gid + "/" + branch_id;
}

OpReply TwoPhaseResource::Prepare(const BranchRequest& r, const BusinessChange& change) {
  auto result = pool_.Run<OpReply>([&](pqxx::connection& c) -> Result<OpReply> {
    pqxx::nontransaction sql(c);
    const std::string name = XactName(r.gid, r.branch_id);
    if (PreparedExists(sql, name)) return OpReply{200, "already prepared"};
    std::string state = StateOf(sql, r);
    if (state == "aborted") return OpReply{409, "branch was aborted before it prepared"};
    if (!state.empty()) return OpReply{200, "already committed"};
    sql.exec("BEGIN");
    try {
      // A prepare that must wait for another transaction's lock answers "try again" quickly
      // rather than hold one of the pool's connections, which the call that would release the
      // lock (a commit, or a repeated prepare of the lock's holder) needs.
      sql.exec("SET LOCAL lock_timeout = '250ms'");
      // The call's trace context: the outbox rows the change writes carry it.
      Outbox::SetTraceContext(sql, r.traceparent);
      // Conflicts with an abort's mark written first: that abort wins.
      sql.exec_params(
          "INSERT INTO treaty_2pc_branches (gid, branch_id, state) VALUES ($1, $2, 'prepared')",
          r.gid, r.branch_id);
      OpReply business = change(sql, r);
      if (business.status != 200) {
        sql.exec("ROLLBACK");
        return business;
      }
      sql.exec("PREPARE TRANSACTION " + sql.quote(name));
      return OpReply{200, "prepared"};
    } catch (const pqxx::unique_violation&) {
      sql.exec("ROLLBACK");
      return OpReply{409, "branch was aborted before it prepared"};
    } catch (...) {
      try {
        sql.exec("ROLLBACK");
      } catch (...) {
      }
      throw;
    }
  });
  return result.ok() ? *result : Unavailable(result.status());
}

OpReply TwoPhaseResource::Commit(const BranchRequest& r) {
  auto result = pool_.Run<OpReply>([&](pqxx::connection& c) -> Result<OpReply> {
    pqxx::nontransaction sql(c);
    FinishIfPrepared(sql, XactName(r.gid, r.branch_id), "COMMIT PREPARED");
    std::string state = StateOf(sql, r);
    if (state == "prepared" || state == "committed") {
      sql.exec_params(
          "UPDATE treaty_2pc_branches SET state = 'committed', updated_at = now() "
          "WHERE gid = $1 AND branch_id = $2",
          r.gid, r.branch_id);
      return OpReply{200, "committed"};
    }
    if (state == "aborted") return OpReply{409, "branch was aborted; it cannot commit"};
    return OpReply{409, "branch never prepared; it cannot commit"};
  });
  return result.ok() ? *result : Unavailable(result.status());
}

OpReply TwoPhaseResource::Abort(const BranchRequest& r) {
  auto result = pool_.Run<OpReply>([&](pqxx::connection& c) -> Result<OpReply> {
    pqxx::nontransaction sql(c);
    FinishIfPrepared(sql, XactName(r.gid, r.branch_id), "ROLLBACK PREPARED");
    // Leave the mark that refuses a late prepare. A prepare still running holds the row: wait
    // for it briefly, else answer "try again" and the coordinator retries.
    sql.exec("BEGIN");
    try {
      sql.exec("SET LOCAL lock_timeout = '250ms'");
      sql.exec_params(
          "INSERT INTO treaty_2pc_branches (gid, branch_id, state) VALUES ($1, $2, 'aborted') "
          "ON CONFLICT (gid, branch_id) DO NOTHING",
          r.gid, r.branch_id);
      std::string state = StateOf(sql, r);
      sql.exec("COMMIT");
      if (state != "aborted") return OpReply{409, "branch was committed; it cannot abort"};
      return OpReply{200, "aborted"};
    } catch (...) {
      try {
        sql.exec("ROLLBACK");
      } catch (...) {
      }
      throw;
    }
  });
  return result.ok() ? *result : Unavailable(result.status());
}

Status TwoPhaseResource::Finish(const std::string& gid, const std::string& branch_id, bool commit) {
  BranchRequest r;
  r.gid = gid;
  r.branch_id = branch_id;
  OpReply reply = commit ? Commit(r) : Abort(r);
  if (reply.status == 200) return Status::Ok();
  return Status::Unavailable(reply.message);
}

Result<std::vector<TwoPhaseResource::Prepared>> TwoPhaseResource::ListPrepared(Duration age) {
  return pool_.Run<std::vector<Prepared>>([&](pqxx::connection& c)
                                              -> Result<std::vector<Prepared>> {
    pqxx::nontransaction sql(c);
    pqxx::result res = sql.exec_params(
        "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() "
        "AND gid LIKE 'treaty/%' AND prepared < now() - ($1::bigint * interval '1 millisecond')",
        static_cast<int64_t>(age.count()));
    std::vector<Prepared> out;
    for (const auto& row : res) {
      std::string name = row[0].as<std::string>();
      size_t first = name.find('/');
      size_t last = name.rfind('/');
      if (first == last) continue;
      out.push_back(Prepared{name.substr(first + 1, last - first - 1), name.substr(last + 1)});
    }
    return out;
  });
}

}  // namespace treaty::participant
