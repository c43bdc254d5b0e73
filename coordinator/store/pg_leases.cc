// PgTransactionStore's leases and schedule: the fenced attention flag, Reschedule, MakeDue,
// an operator's Force, ClaimDue, TryLease and ReleaseLeases. Each is one statement (no BEGIN and
// COMMIT round trips), and every lease is taken and compared by the database's clock (store.h,
// Fence).

#include <pqxx/pqxx>

#include "coordinator/store/pg_statements.h"
#include "coordinator/store/pg_transaction_store.h"

namespace treaty::store {

using core::TimePoint;
using core::TxStatus;

Status PgTransactionStore::SetAttention(const std::string& gid, const std::string& attention,
                                        const core::Fence* fence) {
  return WriteStatement([&](pqxx::transaction_base& w) -> Status {
    if (fence == nullptr) {
      pqxx::result r = Prepared(
          w,
          "UPDATE treaty.transactions SET attention = NULLIF($2, '') WHERE gid = $1 RETURNING gid",
          gid, attention);
      return r.empty() ? NoTransaction(gid) : Status::Ok();
    }
    pqxx::result r = Prepared(w,
        "UPDATE treaty.transactions SET attention = NULLIF($2, ''), "
        "lease_until = " SQL_LEASE_END("$4::bigint") " "
        "WHERE gid = $1 AND owner = $3 AND lease_until > now() RETURNING gid",
        gid, attention, fence->owner, LeaseMs(fence->lease));
    if (r.empty()) {
      if (!Exists(w, gid)) return NoTransaction(gid);
      return Status::LeaseLost("transaction " + gid + " is no longer leased to " + fence->owner);
    }
    return Status::Ok();
  });
}

Status PgTransactionStore::Reschedule(const std::string& gid, const std::string& owner,
                                      TimePoint next_attempt_at) {
  return WriteStatement([&](pqxx::transaction_base& w) -> Status {
    pqxx::result r = Prepared(w,
        "UPDATE treaty.transactions SET next_attempt_at = CASE WHEN wake_requested "
        "THEN next_attempt_at ELSE " SQL_TS(3) " END, wake_requested = false, lease_until = NULL "
        "WHERE gid = $1 AND owner = $2 RETURNING gid",
        gid, owner, Ms(next_attempt_at));
    // Not the holder: nothing to do.
    if (r.empty() && !Exists(w, gid)) return NoTransaction(gid);
    return Status::Ok();
  });
}

Status PgTransactionStore::MakeDue(const std::string& gid, TimePoint now) {
  return WriteStatement([&](pqxx::transaction_base& w) -> Status {
    pqxx::result r =
        Prepared(w,
                 std::string("UPDATE treaty.transactions SET next_attempt_at = " SQL_TS(
                     2) ", "
                        "wake_requested = true WHERE gid = $1 AND status IN ") +
                     kUnfinished + " RETURNING gid",
                 gid, Ms(now));
    if (r.empty()) {
      if (!Exists(w, gid)) return NoTransaction(gid);
      return Status::Conflict("transaction " + gid + " is not unfinished");
    }
    return Status::Ok();
  });
}

Status PgTransactionStore::Force(const std::string& gid, TxStatus from, TxStatus to,
                                 const std::string& reason, const std::string& actor,
                                 TimePoint now) {
  return WriteStatement([&](pqxx::transaction_base& w) -> Status {
    // The lease goes too: a drive still running loses its fence at its next write.
    pqxx::result r = Prepared(w,
        "WITH moved AS (UPDATE treaty.transactions SET status = $3, reason = $4, "
        "attention = NULL, owner = NULL, lease_until = NULL, wake_requested = false, "
        "next_attempt_at = " SQL_TS(6) ", updated_at = " SQL_TS(6) " "
        "WHERE gid = $1 AND status = $2 RETURNING gid) "
        "INSERT INTO treaty.decision_log (gid, from_status, to_status, reason, actor, at) "
        "SELECT gid, $2, $3, $4, $5, " SQL_TS(6) " FROM moved RETURNING id",
        gid, std::string(core::StatusName(from)), std::string(core::StatusName(to)), reason, actor,
        Ms(now));
    if (r.empty()) {
      if (!Exists(w, gid)) return NoTransaction(gid);
      return Status::Conflict("transaction " + gid + " is no longer " +
                              std::string(core::StatusName(from)));
    }
    return Status::Ok();
  });
}

Result<std::vector<std::string>> PgTransactionStore::ClaimDue(const std::string& owner,
                                                              TimePoint now, Duration lease,
                                                              int limit) {
  return pool_->Run<std::vector<std::string>>(
      [&](pqxx::connection& c) -> Result<std::vector<std::string>> {
        // One statement, so no BEGIN and COMMIT (two more round trips), here and below.
        pqxx::nontransaction w(c);
        pqxx::result r = Prepared(w,
            std::string("UPDATE treaty.transactions SET owner = $1, lease_until = " SQL_LEASE_END(
                            "$3::bigint") " "
                        "WHERE gid IN (SELECT gid FROM treaty.transactions WHERE status IN ") +
                kUnfinished +
                " AND next_attempt_at <= " SQL_TS(2) " AND (lease_until IS NULL OR lease_until <= "
                "now()) ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING gid",
            owner, Ms(now), LeaseMs(lease), limit);
        std::vector<std::string> gids;
        for (const auto& row : r) gids.push_back(row[0].as<std::string>());
        return gids;
      });
}

Result<bool> PgTransactionStore::TryLease(const std::string& gid, const std::string& owner,
                                          Duration lease) {
  return pool_->Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::nontransaction w(c);
    pqxx::result r = Prepared(
        w,
        std::string("UPDATE treaty.transactions SET owner = $2, lease_until = " SQL_LEASE_END(
            "$3::bigint") " WHERE gid = $1 AND status IN ") +
            kUnfinished +
            " AND (lease_until IS NULL OR lease_until <= now() OR owner = $2) RETURNING gid",
        gid, owner, LeaseMs(lease));
    if (r.empty() && !Exists(w, gid)) return NoTransaction(gid);
    return !r.empty();
  });
}

Status PgTransactionStore::ReleaseLeases(const std::string& node) {
  return AsStatus(pool_->Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::nontransaction w(c);
    Prepared(w,
             "UPDATE treaty.transactions SET lease_until = NULL WHERE owner = $1 "
             "OR left(owner, length($1) + 1) = $1 || '#'",
             node);
    return true;
  }));
}

}  // namespace treaty::store
