#pragma once

// The processes a chaos run drives and breaks: one PostgreSQL (databases treaty, orders,
// inventory), the dev Kafka broker, three treatyd on one store (node-0..2, short leases),
// order-svc and inventory-svc (inventory consuming order events), and two treaty-relays on
// order-svc's outbox. Every fault the nemesis injects is a method here, each undone by its
// pair. Not thread-safe: one thread (the one that started it, since children die with the
// thread that forked them) calls these; the workload reads only the URLs, which never change.

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "integration-tests/harness/dev_broker.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/service.h"

namespace treaty::chaos {

struct ClusterOptions {
  std::string lease = "2s";           // treatyd's scheduler.lease
  std::string branch_call = "900ms";  // treatyd's timeouts.branch_call (under half the lease)
};

class ChaosCluster {
 public:
  static constexpr int kCoordinators = 3;
  static constexpr int kRelays = 2;

  static Result<std::unique_ptr<ChaosCluster>> Start(ClusterOptions options = {});

  const std::string& coordinator_url(int i) const { return coordinator_urls_[i]; }
  const std::string& orders_url() const { return orders_url_; }
  const std::string& inventory_url() const { return inventory_url_; }
  harness::PgCluster& pg() { return *pg_; }
  harness::DevBroker& broker() { return *broker_; }

  // The processes the nemesis may kill: "treatyd-0".."treatyd-2", "order-svc", "inventory-svc",
  // "relay-0", "relay-1".
  std::vector<std::string> Targets() const;

  // SIGKILL, as a crash. Restart starts it again on the same port and waits until it serves.
  Status Kill(const std::string& target);
  Status Restart(const std::string& target);
  // The coordinator holding the most running leases by the store's clock, or -1 (none, or the
  // store cannot say): where a pause hurts most.
  int BusiestCoordinator();
  // SIGSTOP / SIGCONT of a coordinator.
  Status Pause(int coordinator);
  Status Resume(int coordinator);
  // Restarts (SIGKILL, start) a coordinator with its clock `seconds` off (libfaketime; 0: the
  // true clock).
  Status Skew(int coordinator, int seconds);
  // Restarts (SIGKILL, start) a coordinator with a fault point armed: `variable` TREATY_CRASH_POINT
  // (it kills itself there) or TREATY_PAUSE_POINT (it stops itself there), `point` as "name:N". The
  // arming holds for that run only: the next start is a plain one.
  Status ArmFaultPoint(int coordinator, const std::string& variable, const std::string& point);
  // Whether a process is alive (not exited; a stopped one is alive), and whether a coordinator
  // is stopped (SIGSTOP, by the nemesis or at its pause point).
  bool Alive(const std::string& target);
  bool Stopped(int coordinator);
  // PostgreSQL stopped (fast: SIGINT; immediate: SIGQUIT, crash recovery at the next start) and
  // started again.
  Status RestartStore(bool immediate);
  // A demo participant's fault switch: `op` fails with 503, hangs until switched off, or
  // ("delay") is handled `delay_ms` late.
  Status ParticipantFault(const std::string& service, const std::string& op,
                          const std::string& action, int delay_ms = 0);

  // The log file of every process (PostgreSQL's included), to keep when a run fails.
  std::vector<std::string> LogFiles();

  // The events topic order-svc writes and inventory-svc consumes.
  static constexpr const char* kEventsTopic = "orders.events";

 private:
  ChaosCluster() = default;
  harness::Service* Find(const std::string& target);
  Status WaitServing(const std::string& target);
  std::vector<std::pair<std::string, std::string>> CoordinatorEnv(int i, int skew_seconds) const;

  ClusterOptions options_;
  std::unique_ptr<harness::PgCluster> pg_;
  std::unique_ptr<harness::DevBroker> broker_;
  std::array<std::unique_ptr<harness::Service>, kCoordinators> coordinators_;
  std::unique_ptr<harness::Service> orders_;
  std::unique_ptr<harness::Service> inventory_;
  std::array<std::unique_ptr<harness::Service>, kRelays> relays_;
  std::array<std::string, kCoordinators> coordinator_urls_;
  std::string orders_url_;
  std::string inventory_url_;
  std::vector<std::pair<std::string, std::string>> saga_env_;
};

}  // namespace treaty::chaos
