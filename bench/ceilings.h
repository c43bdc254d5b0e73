#pragma once

// The ceilings the bench compares treatyd and the relay with: what PostgreSQL alone does
// (pgbench) with comparable writes, and the raw librdkafka produce rate. Each figure is a JSON
// object, as the report (report.h) reads it.

#include <Poco/JSON/Object.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench/bench_stack.h"
#include "bench/run_options.h"
#include "common/status.h"

namespace treaty::bench {

struct ProduceResult {
  double rate = 0;
  int64_t failed = 0;
};

// The raw produce rate of `messages` messages of `size` bytes to `bootstrap` (idempotent,
// acks=all, as treatyd and the relay produce).
ProduceResult Produce(const std::string& bootstrap, int64_t messages, size_t size);

// pgbench runs against the stack's PostgreSQL, each for the run's measured time.
class PgCeilings {
 public:
  PgCeilings(BenchStack& stack, const RunOptions& options) : stack_(stack), o_(options) {}

  // One INSERT and one UPDATE per transaction, in a table of their own.
  Result<Poco::JSON::Object::Ptr> PgBench(int clients);

  // What PostgreSQL alone does with treatyd's writes of one 2PC transaction with two branches:
  // the row and its first log row, the decision, the end, each with its log row and a commit of
  // its own, in the store's own tables (schema of coordinator/store/migrations.cc) with rows of
  // the bench's sizes. Simplified from PgTransactionStore's statements: not batched across
  // transactions (finding 13 of docs/performance.md), without their row locks in gid order,
  // JSON decoding of a batch and checks of the mode's moves. An estimate of what the records
  // cost, not a bound.
  Result<Poco::JSON::Object::Ptr> PgBenchTreatyWrites(int clients);

  // What PostgreSQL alone does with the relay's work: as many sessions as the relay has
  // workers (2, its default), each marking sent and reading back the head of its half of the
  // pending rows, 500 at a time, in one statement, over a copy of the outbox the relay drains.
  // No Kafka, no advisory locks, one round trip a batch: less SQL than any relay that records
  // each row needs.
  Result<Poco::JSON::Object::Ptr> OutboxSqlAlone();

  // What PostgreSQL alone does to stream the same events as the WAL relay: pg_recvlogical
  // decoding slot `slot` of `database` with pgoutput (the relay's publication and options) to
  // /dev/null, from the slot's position to `end_lsn`. {"events", "seconds", "per_second"}.
  Result<Poco::JSON::Object::Ptr> WalDecodeAlone(const std::string& database,
                                                 const std::string& slot,
                                                 const std::string& end_lsn, int64_t events);

 private:
  // The run's measured time in whole seconds (at least 1), as pgbench -T takes it.
  int MeasureSeconds() const;

  // Runs pgbench with `script` on `database` (its sessions' settings in `pgoptions`, as
  // PGOPTIONS) and returns its transactions per second (and average latency) as
  // {"clients", "tps", "latency_avg_ms"}.
  Result<Poco::JSON::Object::Ptr> RunPgBench(const std::string& database, const std::string& script,
                                             const std::vector<std::string>& how, int clients,
                                             const std::string& pgoptions = "");

  BenchStack& stack_;
  const RunOptions o_;
};

}  // namespace treaty::bench
