#pragma once

// The servers a benchmark run measures, on loopback: durable PostgreSQL (fsync and
// synchronous_commit on; databases "treaty", "ceiling" and "outbox"), the dev broker, the no-op
// participant and treatyd over them. Start() brings them all up, treatyd last and ready; the
// destructor stops them. Not thread-safe.

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "integration-tests/harness/dev_broker.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/service.h"

namespace treaty::bench {

class BenchStack {
 public:
  // `shards` > 1: treatyd's store is split over that many durable PostgreSQL clusters
  // (store.shards; the first is pg(), the others hold only a "treaty" database).
  explicit BenchStack(int shards = 1) : shards_(shards) {}
  Status Start();
  // Waits (up to a minute) until treatyd's /readyz says ready.
  Status WaitReady();
  // Prints where the servers are (one JSON line on stdout), then keeps them up until stdin
  // closes: for profiling one mode with load and perf by hand.
  Status ServeUntilStdinCloses();
  // Inserts `rows` outbox rows of 1,000 aggregates into `table` (the kit's schema) of the
  // "outbox" database: what the relay, or PostgreSQL alone, drains.
  Status PreloadOutbox(const std::string& table, int64_t rows);

  // After Start() succeeded.
  harness::PgCluster& pg() { return *pg_; }
  harness::DevBroker& broker() { return *broker_; }
  harness::Service& participant() { return *participant_; }
  harness::Service& treatyd() { return *treatyd_; }

 private:
  static constexpr const char* kParticipantPath = TREATY_BENCH_PARTICIPANT_PATH;

  Status StartTreatyd();

  const int shards_;
  std::unique_ptr<harness::PgCluster> pg_;
  std::vector<std::unique_ptr<harness::PgCluster>> more_shards_;
  std::unique_ptr<harness::DevBroker> broker_;
  std::unique_ptr<harness::Service> participant_;
  std::unique_ptr<harness::Service> treatyd_;
};

}  // namespace treaty::bench
