// PgTransactionStore's reads: Load, List, CountByStatus and the metrics' InFlight.

#include <pqxx/pqxx>

#include "coordinator/store/pg_rows.h"
#include "coordinator/store/pg_statements.h"
#include "coordinator/store/pg_transaction_store.h"

namespace treaty::store {

using core::Transaction;
using core::TxStatus;

Result<Transaction> PgTransactionStore::Load(const std::string& gid, bool with_log) {
  return pool_->Run<Transaction>([&](pqxx::connection& c) -> Result<Transaction> {
    if (!with_log) {
      pqxx::nontransaction w(c);  // one statement: its own snapshot
      return LoadJoined(w, gid);
    }
    pqxx::read_transaction w(c);  // the transaction and its log from one snapshot
    auto tx = LoadJoined(w, gid);
    if (tx.ok()) LoadLog(w, &*tx);
    return tx;
  });
}

Result<std::vector<Transaction>> PgTransactionStore::List(const core::ListFilter& f) {
  return pool_->Run<std::vector<Transaction>>(
      [&](pqxx::connection& c) -> Result<std::vector<Transaction>> {
        pqxx::read_transaction w(c);
        pqxx::result r = Prepared(w,
            "SELECT gid, mode, status, reason, attention, " SQL_MS("deadline") ", " SQL_MS(
                "created_at") ", " SQL_MS("updated_at") ", call_context ->> 'trace_id' "
            "FROM treaty.transactions "
            "WHERE ($1 = '' OR status = $1) AND ($2 = '' OR mode = $2) AND gid > $3 "
            "AND ($5::bigint IS NULL OR created_at >= to_timestamp($5::bigint / 1000.0)) "
            "AND ($6::bigint IS NULL OR created_at < to_timestamp($6::bigint / 1000.0)) "
            "AND ($7::bigint IS NULL OR (status IN " +
                std::string(kUnfinished) +
                " AND (coalesce(attention, '') <> '' OR deadline < to_timestamp($7::bigint / 1000.0)))) "
                "ORDER BY gid LIMIT $4",
            f.status ? std::string(core::StatusName(*f.status)) : std::string(),
            f.mode ? std::string(core::ModeName(*f.mode)) : std::string(), f.after_gid, f.limit,
            OptionalMs(f.created_since), OptionalMs(f.created_before), OptionalMs(f.stuck_at));
        std::vector<Transaction> out;
        for (const auto& row : r) {
          Transaction tx;
          tx.gid = row[0].as<std::string>();
          tx.mode = core::ParseMode(row[1].as<std::string>()).value_or(core::Mode::k2pc);
          tx.status = core::ParseStatus(row[2].as<std::string>()).value_or(TxStatus::kActive);
          tx.reason = Str(row[3]);
          tx.attention = Str(row[4]);
          tx.deadline = FromMs(row[5].as<int64_t>());
          tx.created_at = FromMs(row[6].as<int64_t>());
          tx.updated_at = FromMs(row[7].as<int64_t>());
          tx.context.trace_id = Str(row[8]);  // the list shows the trace id alone
          out.push_back(std::move(tx));
        }
        return out;
      });
}

Result<std::map<core::TxStatus, int64_t>> PgTransactionStore::CountByStatus() {
  using Out = std::map<core::TxStatus, int64_t>;
  return pool_->Run<Out>([&](pqxx::connection& c) -> Result<Out> {
    pqxx::read_transaction tx(c);
    // Counting every row is what a sequential scan is for. The store's sessions turn it off
    // (finding 14 of docs/performance.md): the plan is then still one, but costed as disabled
    // and without parallel workers, about 6 times slower over 300,000 rows.
    tx.exec("SET LOCAL enable_seqscan = on");
    Out out;
    for (const auto& row :
         tx.exec("SELECT status, count(*) FROM treaty.transactions GROUP BY status")) {
      if (auto s = core::ParseStatus(row[0].as<std::string>())) out[*s] = row[1].as<int64_t>();
    }
    return out;
  });
}

Result<std::pair<std::map<std::string, int64_t>, double>> PgTransactionStore::InFlight() {
  using Out = std::pair<std::map<std::string, int64_t>, double>;
  return pool_->Run<Out>([&](pqxx::connection& c) -> Result<Out> {
    pqxx::read_transaction tx(c);
    Out out;
    pqxx::result counts = tx.exec(std::string("SELECT status, count(*) FROM treaty.transactions "
                                              "WHERE status IN ") +
                                  kUnfinished + " GROUP BY status");
    for (const auto& row : counts) out.first[row[0].as<std::string>()] = row[1].as<int64_t>();
    pqxx::result lag = tx.exec(std::string("SELECT coalesce(extract(epoch FROM now() - "
                                           "min(next_attempt_at)), 0) FROM treaty.transactions "
                                           "WHERE status IN ") +
                               kUnfinished + " AND next_attempt_at <= now()");
    out.second = lag[0][0].as<double>();
    return out;
  });
}

}  // namespace treaty::store
