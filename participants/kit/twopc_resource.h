#pragma once

// The participant half of 2PC on PostgreSQL, for any service: `prepare` runs the service's
// business change in a local transaction and ends it with PREPARE TRANSACTION; `commit` is
// COMMIT PREPARED and `abort` is ROLLBACK PREPARED. Every op is idempotent:
//   - prepare of a prepared or committed branch: 2xx; of a branch aborted first: 409;
//   - commit of a committed branch: 2xx; of an aborted or unknown one: 409;
//   - abort of a branch that never prepared: 2xx, and it leaves a mark so that a prepare
//     arriving later is refused (409).
// The branch's state lives in treaty_2pc_branches, written in the same local transaction as the
// business change. Prepared transactions are named "treaty/<gid>/<branch_id>".

#include <functional>
#include <string>
#include <vector>

#include "common/pg/pg_pool.h"
#include "participants/kit/protocol.h"

namespace treaty::participant {

// Applies the business change inside the open local transaction (`sql` has run BEGIN). Returns
// 200 to go on to PREPARE, 409 with the reason to refuse (the transaction is rolled back).
using BusinessChange = std::function<OpReply(pqxx::nontransaction& sql, const BranchRequest& r)>;

class TwoPhaseResource {
 public:
  explicit TwoPhaseResource(pg::PgPool& pool) : pool_(pool) {}

  // Creates the kit's table if missing.
  static const char* SchemaSql();

  OpReply Prepare(const BranchRequest& r, const BusinessChange& change);
  OpReply Commit(const BranchRequest& r);
  OpReply Abort(const BranchRequest& r);

  // Finishes a prepared transaction by name: commit or roll back; used by the sweep.
  Status Finish(const std::string& gid, const std::string& branch_id, bool commit);

  struct Prepared {
    std::string gid;
    std::string branch_id;
  };
  // This database's Treaty prepared transactions older than `age`.
  Result<std::vector<Prepared>> ListPrepared(Duration age);

  static std::string XactName(const std::string& gid, const std::string& branch_id);

 private:
  pg::PgPool& pool_;
};

}  // namespace treaty::participant
