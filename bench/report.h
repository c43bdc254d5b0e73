#pragma once

// The bench's report: the machine a run measured on, and the Markdown table of a run's figures
// (the JSON document that `treaty-bench run` writes), as bench/README.md shows them.

#include <Poco/JSON/Object.h>

#include <string>

#include "integration-tests/harness/pg_cluster.h"

namespace treaty::bench {

// CPU, cores, memory, kernel, PostgreSQL and librdkafka versions, the date and the run's kind.
Poco::JSON::Object::Ptr MachineDescription(harness::PgCluster& pg, const std::string& kind);

// The targets of #23, from figures of the same run (`results`: the run's "results" object):
//   limit_2pc = 1 / (1/pgbench + 5/raw_http) at the run's clients (one durable transaction and
//   five HTTP exchanges: the client's request and four branch calls), 2pc_vs_limit;
//   p50_1client (2PC, one client), p50_floor_1client (five raw HTTP round trips at one client
//   plus one pgbench commit at one client), p50_1client_vs_floor; treatyd's peak RSS;
//   relay_wal and wal_decode_alone (events written as rows deleted in their transaction),
//   relay_wal_vs_decode, relay_wal_vs_polling, and the same for events written as messages.
// A figure whose inputs are missing is left out.
Poco::JSON::Object::Ptr Targets(const Poco::JSON::Object::Ptr& results);

// The figures of `doc` ({"machine", "results"}) as Markdown.
std::string Markdown(const Poco::JSON::Object::Ptr& doc);

}  // namespace treaty::bench
