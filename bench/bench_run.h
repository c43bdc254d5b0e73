#pragma once

// One benchmark run (`treaty-bench run`): starts the stack (bench_stack.h), measures every
// figure of bench/README.md (each mode's load, the ceilings, scaling, memory, a backlog, an
// attack, the outbox relay) and sets them in a JSON document for the report (report.h).

#include <Poco/JSON/Object.h>

#include <string>

#include "bench/bench_stack.h"
#include "bench/ceilings.h"
#include "bench/run_options.h"
#include "common/status.h"

namespace treaty::bench {

class BenchRun {
 public:
  // `self`: this program's path, run again as `self load ...` for each load run.
  BenchRun(RunOptions o, std::string self) : o_(std::move(o)), self_(std::move(self)) {}

  // Sets {"machine", "results"} in `out`.
  Status Run(Poco::JSON::Object::Ptr out);

 private:
  // One closed-loop load run in a process of its own (`self load`): its JSON line.
  Result<Poco::JSON::Object::Ptr> Load(const std::string& mode, int clients, int branches);
  // 2PC at 8 clients while 1,500 clients hold connections open saying nothing and 200 more
  // trickle a header byte every 500 ms (#25): what valid clients see during such an attack.
  Result<Poco::JSON::Object::Ptr> UnderAttack();
  // Unfinished transactions left in the store (as after a crash with a backlog): treatyd is
  // restarted over them; how fast it finishes them all and how much memory that takes.
  Result<Poco::JSON::Object::Ptr> Backlog();
  // The outbox relay draining preloaded rows to Kafka.
  Result<Poco::JSON::Object::Ptr> Outbox();
  // The WAL relay (mode: wal) draining `o_.outbox_rows` events written as `write` ("row_deleted":
  // a row inserted and deleted in its transaction; "message": pg_logical_emit_message) while
  // no relay ran, 100 to a transaction; beside it PostgreSQL alone decoding the same events
  // (pg_recvlogical). {"write", "events", "relay", {..}, "decode_alone", {..}}.
  Result<Poco::JSON::Object::Ptr> OutboxWal(const std::string& write, PgCeilings& ceilings);

  const RunOptions o_;
  const std::string self_;
  int runs_ = 0;
  BenchStack stack_;
};

}  // namespace treaty::bench
