// PgTransactionStore as the store of saga definition versions (saga/saga_versions.h).

#include <pqxx/pqxx>

#include "coordinator/store/pg_rows.h"
#include "coordinator/store/pg_statements.h"
#include "coordinator/store/pg_transaction_store.h"

namespace treaty::store {
namespace {

// The versions of `name` (one when `version` is given), with how many unfinished transactions
// each has (transactions_unfinished_definition answers the count from the unfinished alone).
std::vector<saga::StoredSagaVersion> Versions(pqxx::transaction_base& w, const std::string& name,
                                              const std::optional<std::string>& version) {
  pqxx::result r = w.exec_params(
      "SELECT v.version, v.file, v.body, " SQL_MS("v.loaded_at") ", "
      "(SELECT count(*) FROM treaty.transactions t WHERE t.definition = v.name || '@' || v.version "
      "AND t.definition IS NOT NULL AND t.status IN " + std::string(kUnfinished) + ") "
      "FROM treaty.saga_versions v WHERE v.name = $1 AND ($2::text IS NULL OR v.version = $2) "
      "ORDER BY v.loaded_at DESC, v.version",
      name, version);
  std::vector<saga::StoredSagaVersion> out;
  for (const auto& row : r) {
    out.push_back(saga::StoredSagaVersion{.name = name,
                                          .version = row[0].as<std::string>(),
                                          .file = row[1].as<std::string>(),
                                          .text = row[2].as<std::string>(),
                                          .loaded_at = FromMs(row[3].as<int64_t>()),
                                          .unfinished = row[4].as<int64_t>()});
  }
  return out;
}

}  // namespace

Status PgTransactionStore::SaveSagaVersion(const std::string& name, const std::string& version,
                                           const std::string& file, const std::string& text) {
  auto done = pool_->Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::nontransaction w(c);
    w.exec_params(
        "INSERT INTO treaty.saga_versions (name, version, file, body) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (name, version) DO NOTHING",
        name, version, file, text);
    return true;
  });
  return done.status();
}

Result<std::optional<saga::StoredSagaVersion>> PgTransactionStore::FindSagaVersion(
    const std::string& name, const std::string& version) {
  using Out = std::optional<saga::StoredSagaVersion>;
  return pool_->Run<Out>([&](pqxx::connection& c) -> Result<Out> {
    pqxx::read_transaction w(c);
    auto found = Versions(w, name, version);
    if (found.empty()) return Out();
    return Out(std::move(found.front()));
  });
}

Result<std::vector<saga::StoredSagaVersion>> PgTransactionStore::ListSagaVersions(
    const std::string& name) {
  using Out = std::vector<saga::StoredSagaVersion>;
  return pool_->Run<Out>([&](pqxx::connection& c) -> Result<Out> {
    pqxx::read_transaction w(c);
    return Versions(w, name, std::nullopt);
  });
}

}  // namespace treaty::store
