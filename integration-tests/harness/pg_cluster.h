#pragma once

// A throwaway PostgreSQL cluster: initdb into a temp dir, a postmaster on a free 127.0.0.1 port,
// trust authentication for the superuser "postgres", max_prepared_transactions enabled. As root
// it runs as the "postgres" user (PostgreSQL refuses root). The server binaries are taken from
// $TREATY_PG_BINDIR or the newest /usr/lib/postgresql/*/bin.

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/temp_dir.h"

namespace treaty::harness {

struct PgClusterOptions {
  // false: fsync off, for speed; true: PostgreSQL's default durability (benchmarks).
  bool durable = false;
  int max_prepared_transactions = 100;
  int max_connections = 200;
  // wal_level = logical: logical replication slots can be created (treaty-relay's mode: wal).
  bool logical_decoding = false;
};

class PgCluster {
 public:
  static Result<std::unique_ptr<PgCluster>> Start(PgClusterOptions options = {});

  // Stops the server (fast shutdown) and removes its data directory.
  ~PgCluster();

  // Stops the server, keeping its data, e.g. to show a client what a database outage looks like.
  // Fast shutdown (SIGINT) by default; `immediate` (SIGQUIT) ends it as a crash would, leaving
  // crash recovery to the next start.
  Status Stop(bool immediate = false);
  // Starts it again on the same port with the same data.
  Status Restart();
  bool Running();

  uint16_t port() const { return port_; }
  pid_t pid() const { return server_ ? server_->pid() : -1; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& root_dir() const { return dir_.path(); }

  // postgresql://postgres@127.0.0.1:<port>/<database>
  std::string Url(std::string_view database = "postgres") const;
  // The libpq keyword form of Url(), which libpqxx takes directly.
  std::string ConnectionString(std::string_view database = "postgres") const;

  Status CreateDatabase(const std::string& name);
  // Runs `sql` in `database` and returns the first column of the first row ("" if none).
  Result<std::string> QueryValue(const std::string& database, const std::string& sql);
  // Runs statements in `database` (autocommit).
  Status Execute(const std::string& database, const std::string& sql);

 private:
  PgCluster() = default;
  Status Launch();
  Status WaitReady();

  PgClusterOptions options_;
  TempDir dir_;
  std::string bin_dir_;
  std::string data_dir_;
  std::string run_as_;
  uint16_t port_ = 0;
  int launches_ = 0;
  std::unique_ptr<Process> server_;  // declared after dir_: destroyed before it
};

}  // namespace treaty::harness
