#pragma once

// The chaos run's nemesis: at seeded random moments it injects faults into the cluster, one or
// several at once, and heals each after a seeded random while. Every start and end goes to the
// history. It runs on the thread that started the cluster (see ChaosCluster).
//
// The faults: a process SIGKILLed and restarted (any coordinator, participant or relay); a
// coordinator SIGSTOPped for longer than its lease; a coordinator restarted with its clock 20 s
// off; PostgreSQL stopped fast or immediately and started; the broker down, slow, or failing
// produce requests; a participant failing (503) or hanging on one op.

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "integration-tests/chaos/chaos_cluster.h"
#include "integration-tests/chaos/history.h"

namespace treaty::chaos {

struct NemesisOptions {
  uint64_t seed = 1;
  int max_concurrent = 2;                               // faults in force at once
  Duration mean_gap = std::chrono::milliseconds(1500);  // between fault starts
  Duration lease = std::chrono::seconds(2);             // the coordinators' lease
  std::set<std::string>
      only;  // fault kinds to choose from ("kill", "pause-point", ...); empty: all
};

// Every fault kind the nemesis knows.
std::vector<std::string> FaultKinds();

class Nemesis {
 public:
  Nemesis(ChaosCluster& cluster, HistoryWriter& history, NemesisOptions options);

  // Starts and heals faults until `until` (a steady-clock time), then heals every fault still in
  // force. An error only when a heal keeps failing (the cluster cannot be brought back).
  Status RunUntil(std::chrono::steady_clock::time_point until);
  // Heals every fault in force now.
  Status HealAll();

  // Faults injected so far, by kind.
  const std::map<std::string, int64_t>& injected() const { return injected_; }

 private:
  struct Active {
    std::string fault;
    std::string target;  // what it holds: no second fault takes it meanwhile
    std::chrono::steady_clock::time_point heal_at;
    // Undoes the fault: true once done, false to be asked again a little later (a fault that
    // waits for something, e.g. a process to reach its pause point), an error when it failed.
    std::function<Result<bool>()> heal;
    int failed_heals = 0;
  };

  void StartOne();
  Status HealDue(bool all);
  bool Busy(const std::string& target) const;
  bool AnyActive(const std::string& fault_prefix) const;
  Duration Between(Duration low, Duration high);
  void Record(const std::string& type, const std::string& fault, const std::string& target,
              const std::string& error = "");

  ChaosCluster& cluster_;
  HistoryWriter& history_;
  const NemesisOptions options_;
  std::mt19937_64 rng_;
  std::vector<Active> active_;
  std::map<std::string, int64_t> injected_;
};

}  // namespace treaty::chaos
