#pragma once

// The bench's report: the machine a run measured on, and the Markdown table of a run's figures
// (the JSON document that `treaty-bench run` writes), as bench/README.md shows them.

#include <Poco/JSON/Object.h>

#include <string>

#include "integration-tests/harness/pg_cluster.h"

namespace treaty::bench {

// CPU, cores, memory, kernel, PostgreSQL and librdkafka versions, the date and the run's kind.
Poco::JSON::Object::Ptr MachineDescription(harness::PgCluster& pg, const std::string& kind);

// The figures of `doc` ({"machine", "results"}) as Markdown.
std::string Markdown(const Poco::JSON::Object::Ptr& doc);

}  // namespace treaty::bench
