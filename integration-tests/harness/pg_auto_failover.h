#pragma once

// A throwaway pg_auto_failover formation on loopback: a monitor and PostgreSQL nodes (a primary
// and one or two synchronous secondaries), each run by its own `pg_autoctl ... --run` keeper as
// the "postgres" user when we are root. Needs Debian's pg-auto-failover-cli and
// postgresql-15-auto-failover (scripts/setup.sh installs them).
//
// The monitor's health checks are shortened (1 s checks, a node unhealthy after 3 s, a lost
// primary given 3 s to demote) so that a failover takes seconds, not the default minute.
// Replication is synchronous, so a commit acknowledged by the primary is on a standby too. With
// one standby that is pg_auto_failover's default (number_sync_standbys 0, replication quorum
// on), which drops to asynchronous replication (wait_primary) whenever the monitor finds the
// standby unhealthy, as it may during a switchover on a loaded machine. With two standbys the
// formation gets number_sync_standbys 1: the primary never commits without one of them, and
// blocks writes instead when both are gone (docs/deployment.md).
// max_prepared_transactions is 100 on every node (a participant's database may be on one).

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/temp_dir.h"

namespace treaty::harness {

class PgAutoFailover {
 public:
  // Starts the monitor, a primary (node 0) and `standbys` (1 or 2) secondaries and waits (up to a
  // few minutes on a loaded machine) until the monitor reports them so. `database` is created on
  // the primary.
  static Result<std::unique_ptr<PgAutoFailover>> Start(const std::string& database,
                                                       int standbys = 1);

  // Stops the keepers (which stop their PostgreSQL), nodes first, then the monitor.
  ~PgAutoFailover();

  // postgresql://postgres@127.0.0.1:<p0>,127.0.0.1:<p1>[,...]/<db>?target_session_attrs=read-write
  std::string Url(std::string_view database) const;

  // The number of data nodes (1 + standbys).
  int size() const { return static_cast<int>(nodes_.size()); }
  // The index of the node the monitor reports as primary; -1 if none.
  int Primary();
  // The node whose PostgreSQL now accepts writes (-1 if none), asked of the nodes themselves.
  int Writable(const std::string& database);
  uint16_t port(int node) const { return nodes_[node].port; }

  // Ends node `node` as a crashed machine would: its keeper, the keeper's helpers and its
  // postmaster all get SIGKILL (killing the postmaster alone only makes the keeper restart it).
  Status KillNode(int node);
  // Starts a killed node's keeper again (`pg_autoctl run`) and waits until the monitor reports
  // it as the secondary of the current primary: an old primary rejoins by rewinding onto the new
  // one's history, as after a real crash.
  Status RestartNode(int node, Duration timeout);
  // `pg_autoctl perform switchover`: a planned promotion of a secondary. Returns when the
  // command does (the new primary is then in place).
  Status Switchover();
  // Waits until node `node` is the primary the monitor reports and accepts writes.
  Status WaitPrimary(int node, Duration timeout);
  // Waits until a node other than `old` is the primary the monitor reports and accepts writes;
  // returns its index.
  Result<int> WaitNewPrimary(int old, Duration timeout);

  // Runs statements on node `node` directly (autocommit); QueryValue's `node` -1 is the monitor.
  Status Execute(int node, const std::string& database, const std::string& sql);
  Result<std::string> QueryValue(int node, const std::string& database, const std::string& sql);

 private:
  struct Node {
    std::string name;
    std::string pgdata;
    uint16_t port = 0;
    std::unique_ptr<Process> keeper;
  };

  PgAutoFailover() = default;
  Status StartNode(int i, const std::string& database);
  // max_prepared_transactions = 100 on node 0 (the participants' 2PC branches are PostgreSQL
  // prepared transactions), before the standbys are cloned from it: a standby needs at least the
  // primary's value, and its base backup copies the setting.
  Status AllowPreparedTransactions();
  // Waits until the monitor reports node `i` in `state` (reported and goal) while its keeper runs.
  Status WaitState(int i, const std::string& state, Duration timeout);
  std::string MonitorUrl() const;
  std::vector<std::pair<std::string, std::string>> Env() const;
  // The states the monitor reports, "node0=primary,node1=secondary".
  std::string States();

  TempDir dir_;
  std::string bin_dir_;
  std::string run_as_;
  uint16_t monitor_port_ = 0;
  std::unique_ptr<Process> monitor_;
  std::vector<Node> nodes_;
};

}  // namespace treaty::harness
