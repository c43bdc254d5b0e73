#pragma once

// treatyd's connection to its PostgreSQL store: connecting, the schema migrations, and the
// readiness probe. libpqxx exceptions stop here and come back as Status values.
// Thread-safe: calls are serialized on one connection.

#include <memory>
#include <mutex>
#include <string>

#include "common/duration.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace treaty::store {

class PgStore {
 public:
  // `url` is a libpq URI (postgresql://...). Nothing is connected until Connect().
  PgStore(std::string url, Duration connect_timeout);
  ~PgStore();

  // One connection attempt; Unavailable when the server cannot be reached.
  Status Connect();

  // Creates the treaty schema and applies every migration not yet applied, each in its own
  // transaction with its row in treaty.schema_migrations, under an advisory lock so that
  // several treatyd starting at once apply each migration once. Returns how many it applied
  // (0 when the schema is current).
  Result<int> Migrate();

  // Compares the slot map stored in this database (treaty.shard_map, migration 14) with the
  // configured one, this database being shard `shard` of `map`: writes it when none is stored
  // yet (the first start; concurrent first starts write one row, and each then compares with
  // it). InvalidArgument ("disagrees": the config is wrong, retrying cannot help) naming the stored
  // and the configured map when they differ; Unavailable when the store cannot be reached.
  Status CheckShardMap(int shard, int shard_count, const std::string& slots);

  // Unavailable unless a round trip to the server succeeds now; reconnects a broken connection.
  Status Ping();

 private:
  struct Connection;  // wraps pqxx::connection, kept out of this header
  Status ConnectLocked() REQUIRES(mu_);

  const std::string url_;
  Mutex mu_;
  std::unique_ptr<Connection> conn_ GUARDED_BY(mu_);
};

}  // namespace treaty::store
