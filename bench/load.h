#pragma once

// The closed-loop load generator of scripts/bench: N clients, each starting one global transaction
// and waiting for its outcome before starting the next, over keep-alive HTTP.

#include <cstdint>
#include <string>
#include <vector>

#include "common/duration.h"

namespace treaty::bench {

struct LoadSpec {
  std::string treatyd;      // http://host:port
  std::string participant;  // the no-op participant's base URL
  // "2pc", "tcc", "saga" (a chain of `branches` steps), "msg" (begin with one Kafka message, then
  // submit), or "http" (the raw request rate of the participant: no coordinator).
  std::string mode = "2pc";
  int clients = 32;
  int branches = 2;
  Duration warmup = std::chrono::seconds(2);
  Duration measure = std::chrono::seconds(10);
  std::string run_id = "r";  // makes gids unique across runs on one store
};

struct LoadResult {
  int64_t completed = 0;  // committed within the measured window
  int64_t errors = 0;     // anything else (over the whole run)
  double seconds = 0;
  double tps = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  std::string first_error;
};

// Runs the load; blocks for warmup + measure (plus the last answers).
LoadResult RunLoad(const LoadSpec& spec);

// One line of JSON.
std::string ToJson(const LoadSpec& spec, const LoadResult& r);

}  // namespace treaty::bench
