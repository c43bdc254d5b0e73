#include "coordinator/store/pg_store.h"

#include <algorithm>
#include <pqxx/pqxx>

#include "common/pg/pg_pool.h"
#include "coordinator/store/migrations.h"

namespace treaty::store {
namespace {

// Any fixed number will do, as long as every treatyd uses the same one.
constexpr int64_t kMigrationLockKey = 0x7472656174790001;  // "treaty" 1

}  // namespace

struct PgStore::Connection {
  explicit Connection(const std::string& url) : conn(url) {}
  pqxx::connection conn;
};

PgStore::PgStore(std::string url, Duration connect_timeout)
    : url_(pg::WithConnectTimeout(url, connect_timeout)) {}

PgStore::~PgStore() = default;

Status PgStore::Connect() {
  MutexLock lock(mu_);
  return ConnectLocked();
}

Status PgStore::ConnectLocked() {
  try {
    conn_ = std::make_unique<Connection>(url_);
    return Status::Ok();
  } catch (const std::exception& e) {
    conn_.reset();
    return Status::Unavailable(std::string("cannot connect to the store: ") + e.what());
  }
}

Result<int> PgStore::Migrate() {
  MutexLock lock(mu_);
  if (!conn_) {
    Status s = ConnectLocked();
    if (!s.ok()) return s;
  }
  int applied = 0;
  try {
    for (const Migration& m : Migrations()) {
      pqxx::work tx(conn_->conn);
      tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLockKey);
      tx.exec("CREATE SCHEMA IF NOT EXISTS treaty");
      tx.exec(
          "CREATE TABLE IF NOT EXISTS treaty.schema_migrations ("
          " version integer PRIMARY KEY, name text NOT NULL,"
          " applied_at timestamptz NOT NULL DEFAULT now())");
      pqxx::result done =
          tx.exec_params("SELECT 1 FROM treaty.schema_migrations WHERE version = $1", m.version);
      if (!done.empty()) continue;  // the transaction rolls back: nothing was changed
      tx.exec(std::string(m.sql));
      tx.exec_params("INSERT INTO treaty.schema_migrations (version, name) VALUES ($1, $2)",
                     m.version, std::string(m.name));
      tx.commit();
      ++applied;
    }
  } catch (const pqxx::broken_connection& e) {
    conn_.reset();
    return Status::Unavailable(std::string("store connection lost during migration: ") + e.what());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("migration failed: ") + e.what());
  }
  return applied;
}

Status PgStore::Ping() {
  MutexLock lock(mu_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!conn_) {
      Status s = ConnectLocked();
      if (!s.ok()) return s;
    }
    try {
      pqxx::nontransaction tx(conn_->conn);
      tx.exec("SELECT 1");
      return Status::Ok();
    } catch (const std::exception& e) {
      // A connection broken by a server restart fails once; the retry reconnects.
      conn_.reset();
      if (attempt == 1) return Status::Unavailable(std::string("store unreachable: ") + e.what());
    }
  }
  return Status::Unavailable("store unreachable");
}

}  // namespace treaty::store
