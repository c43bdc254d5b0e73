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

Status PgStore::CheckShardMap(int shard, int shard_count, const std::string& slots) {
  MutexLock lock(mu_);
  if (!conn_) {
    Status s = ConnectLocked();
    if (!s.ok()) return s;
  }
  try {
    pqxx::work tx(conn_->conn);
    tx.exec_params(
        "INSERT INTO treaty.shard_map (shard, shard_count, slots) VALUES ($1, $2, $3) "
        "ON CONFLICT (singleton) DO NOTHING",
        shard, shard_count, slots);
    pqxx::row stored = tx.exec1("SELECT shard, shard_count, slots FROM treaty.shard_map");
    tx.commit();
    const int stored_shard = stored[0].as<int>();
    const int stored_count = stored[1].as<int>();
    const std::string stored_slots = stored[2].as<std::string>();
    if (stored_shard == shard && stored_count == shard_count && stored_slots == slots) {
      return Status::Ok();
    }
    return Status::InvalidArgument(
        "its stored slot map disagrees with the configured one: it is stored as shard " +
        std::to_string(stored_shard) + " of " + std::to_string(stored_count) + " (slots " +
        stored_slots + "), configured as shard " + std::to_string(shard) + " of " +
        std::to_string(shard_count) + " (slots " + slots +
        "). Was store.shards reordered, or a shard added or left out? Moving slots is "
        "described in docs/scaling.md");
  } catch (const pqxx::broken_connection& e) {
    conn_.reset();
    return Status::Unavailable(std::string("store connection lost: ") + e.what());
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("cannot check the slot map: ") + e.what());
  }
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
