#pragma once

// One chaos run: start the cluster, run the workload under the nemesis for a while, heal, wait
// for quiescence (bounded), gather what the databases and the topic hold, and check it against
// the history. scripts/chaos and the `chaos` ctest label run it through treaty-chaos.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/duration.h"
#include "common/status.h"
#include "integration-tests/chaos/checker.h"

namespace treaty::chaos {

struct RunConfig {
  uint64_t seed = 1;
  Duration duration = std::chrono::seconds(60);      // of workload under faults
  Duration quiet_bound = std::chrono::seconds(120);  // for every transaction to end after healing
  int clients = 4;
  std::set<std::string> faults;  // the nemesis's fault kinds; empty: every kind
  std::string out_dir;           // history.jsonl, summary.txt, and the logs when a run fails
  bool keep_logs = false;        // keep the logs after a clean run too
};

struct RunReport {
  std::map<std::string, int64_t> faults;                           // by kind
  std::map<std::string, std::map<std::string, int64_t>> outcomes;  // mode -> final status -> n
  int64_t topic_messages = 0;
  int64_t outbox_events = 0;
  std::vector<Violation> violations;
  std::string Summary(const RunConfig& config) const;
};

// An error only when the run itself could not be made (a process would not start, a fault could
// not be healed); violations are in the report.
Result<RunReport> RunChaos(const RunConfig& config);

}  // namespace treaty::chaos
