#pragma once

// The chaos run's clients: threads that start transactions of every mode, each at a coordinator
// chosen at random, and record every request and answer in the history. Stock is set up first:
// hot SKUs every client shares (two plentiful, one scarce enough to run out) and cold SKUs, one
// per transaction that takes one, so an effect left behind names its gid.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "integration-tests/chaos/chaos_cluster.h"
#include "integration-tests/chaos/history.h"

namespace treaty::chaos {

struct WorkloadOptions {
  uint64_t seed = 1;
  int clients = 4;
  int cold_skus = 4000;
};

class Workload {
 public:
  Workload(ChaosCluster& cluster, HistoryWriter& history, WorkloadOptions options);
  ~Workload();

  // Creates the SKUs in inventory-svc's database; returns each one's initial stock.
  Result<std::map<std::string, int64_t>> SetUpStock();
  // Starts the client threads; Stop ends them once their current transaction is answered.
  void Start();
  void Stop();

  // Transactions started, by mode.
  std::map<std::string, int64_t> Started() const;

 private:
  void Client(int index);

  ChaosCluster& cluster_;
  HistoryWriter& history_;
  const WorkloadOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<int> next_cold_{0};
  std::vector<std::thread> threads_;
  mutable std::mutex mu_;
  std::map<std::string, int64_t> started_;
};

}  // namespace treaty::chaos
