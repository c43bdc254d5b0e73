#include "integration-tests/chaos/chaos_cluster.h"

#include <csignal>
#include <cstdlib>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::chaos {
namespace {

using harness::Service;
using harness::ServiceSpec;

std::string ParticipantYaml(const harness::PgCluster& pg, const std::string& db, uint16_t port,
                            const std::string& coordinator, const std::string& kafka) {
  return "listen: 127.0.0.1:" + std::to_string(port) + "\n" +
         (kafka.empty() ? std::string() : "kafka: { bootstrap_servers: \"" + kafka + "\" }\n") +
         "database: { url: \"" + pg.Url(db) + "\", pool_size: 16 }\n" + "coordinator: { url: \"" +
         coordinator + "\" }\n" +
         // Prepared transactions a coordinator forgot are asked about after 5 s.
         "sweep: { interval: 1s, older_than: 5s }\n";
}

std::string RelayYaml(const harness::PgCluster& pg, const std::string& kafka) {
  return "listen: 127.0.0.1:0\n"
         "database: { url: \"" +
         pg.Url("orders") + "\" }\nkafka: { bootstrap_servers: \"" + kafka +
         "\" }\npoll_interval: 200ms\n";
}

bool Answers(const std::string& url) {
  auto r = harness::HttpCall("GET", url, "", std::chrono::seconds(2));
  return r.ok() && r->status == 200;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> ChaosCluster::CoordinatorEnv(
    int i, int skew_seconds) const {
  std::vector<std::pair<std::string, std::string>> env = saga_env_;
  env.emplace_back("TREATY_NODE_ID", "node-" + std::to_string(i));
  if (skew_seconds != 0) {
    // Leases are reckoned on the monotonic clock and by the store's; only wall time is off.
    auto skew =
        harness::ClockSkewEnv((skew_seconds > 0 ? "+" : "") + std::to_string(skew_seconds) + "s");
    env.insert(env.end(), skew.begin(), skew.end());
  }
  return env;
}

Result<std::unique_ptr<ChaosCluster>> ChaosCluster::Start(ClusterOptions options) {
  std::unique_ptr<ChaosCluster> c(new ChaosCluster());
  c->options_ = options;
  // Durable: an immediate shutdown must not lose what PostgreSQL acknowledged (the tests' usual
  // synchronous_commit = off would, and the checker would rightly call it a lost transaction).
  auto pg =
      harness::PgCluster::Start(harness::PgClusterOptions{.durable = true, .max_connections = 300});
  if (!pg.ok()) return pg.status();
  c->pg_ = std::move(*pg);
  for (const char* db : {"treaty", "orders", "inventory"}) {
    Status st = c->pg_->CreateDatabase(db);
    if (!st.ok()) return st;
  }
  auto broker = harness::DevBroker::Start();
  if (!broker.ok()) return broker.status();
  c->broker_ = std::move(*broker);
  const std::string kafka = c->broker_->bootstrap();

  auto order_port = harness::FreePort();
  auto inventory_port = harness::FreePort();
  if (!order_port.ok() || !inventory_port.ok()) return Status::Unavailable("no free port");
  c->orders_url_ = "http://127.0.0.1:" + std::to_string(*order_port);
  c->inventory_url_ = "http://127.0.0.1:" + std::to_string(*inventory_port);
  c->saga_env_ = {{"TREATY_DEMO_ORDER_URL", c->orders_url_},
                  {"TREATY_DEMO_INVENTORY_URL", c->inventory_url_}};
  const std::string treatyd_yaml = harness::TestTreatydConfig(
      *c->pg_,
      "kafka: { bootstrap_servers: \"" + kafka + "\" }\nsagas:\n  - \"" +
          harness::PlaceOrderSagaFile() + "\"\n",
      "{ initial: 50ms, max: 1s, multiplier: 2, jitter: 0.2 }", options.lease, options.branch_call);
  for (int i = 0; i < kCoordinators; ++i) {
    auto t = Service::Start(ServiceSpec{.name = "treatyd-" + std::to_string(i),
                                        .binary = harness::kTreatydPath,
                                        .config_yaml = treatyd_yaml,
                                        .env = c->CoordinatorEnv(i, 0)});
    if (!t.ok()) return t.status();
    c->coordinators_[i] = std::move(*t);
    c->coordinator_urls_[i] = c->coordinators_[i]->base_url();
    if (!harness::BecomesReady(*c->coordinators_[i])) {
      return Status::DeadlineExceeded("treatyd-" + std::to_string(i) + " not ready in 30s");
    }
  }
  // Each participant asks its own coordinator (for msg prepares and its sweep's questions).
  auto orders = Service::Start(ServiceSpec{
      .name = "order-svc",
      .binary = harness::kOrderSvcPath,
      .config_yaml = ParticipantYaml(*c->pg_, "orders", *order_port, c->coordinator_urls_[1], "")});
  if (!orders.ok()) return orders.status();
  c->orders_ = std::move(*orders);
  auto inventory = Service::Start(ServiceSpec{
      .name = "inventory-svc",
      .binary = harness::kInventorySvcPath,
      .config_yaml =
          ParticipantYaml(*c->pg_, "inventory", *inventory_port, c->coordinator_urls_[2], kafka)});
  if (!inventory.ok()) return inventory.status();
  c->inventory_ = std::move(*inventory);
  for (int i = 0; i < kRelays; ++i) {
    auto relay = Service::Start(ServiceSpec{.name = "relay-" + std::to_string(i),
                                            .binary = harness::kRelayPath,
                                            .config_yaml = RelayYaml(*c->pg_, kafka)});
    if (!relay.ok()) return relay.status();
    c->relays_[i] = std::move(*relay);
  }
  return c;
}

std::vector<std::string> ChaosCluster::Targets() const {
  std::vector<std::string> out;
  for (int i = 0; i < kCoordinators; ++i) out.push_back("treatyd-" + std::to_string(i));
  out.insert(out.end(), {"order-svc", "inventory-svc"});
  for (int i = 0; i < kRelays; ++i) out.push_back("relay-" + std::to_string(i));
  return out;
}

std::vector<std::string> ChaosCluster::LogFiles() {
  std::vector<std::string> out = {pg_->root_dir() + "/postgres.log"};
  for (const std::string& t : Targets()) out.push_back(Find(t)->process().log_path());
  return out;
}

Service* ChaosCluster::Find(const std::string& target) {
  for (int i = 0; i < kCoordinators; ++i) {
    if (target == "treatyd-" + std::to_string(i)) return coordinators_[i].get();
  }
  for (int i = 0; i < kRelays; ++i) {
    if (target == "relay-" + std::to_string(i)) return relays_[i].get();
  }
  if (target == "order-svc") return orders_.get();
  if (target == "inventory-svc") return inventory_.get();
  return nullptr;
}

Status ChaosCluster::WaitServing(const std::string& target) {
  std::string probe;
  if (target.rfind("treatyd-", 0) == 0) {
    probe = Find(target)->base_url() + "/readyz";
  } else if (target == "order-svc" || target == "inventory-svc") {
    probe = Find(target)->base_url() + "/healthz";
  } else {
    return Status::Ok();  // a relay serves once it wrote its address
  }
  // Ready needs the store: with PostgreSQL down at the same time it may take long.
  if (!harness::WaitUntil([&] { return Answers(probe); }, std::chrono::seconds(90),
                          std::chrono::milliseconds(50))) {
    return Status::DeadlineExceeded(target + " not serving 90s after its restart");
  }
  return Status::Ok();
}

Status ChaosCluster::Kill(const std::string& target) {
  Service* s = Find(target);
  if (s == nullptr) return Status::InvalidArgument("no process " + target);
  auto r = s->Kill();
  return r.ok() ? Status::Ok() : r.status();
}

Status ChaosCluster::Restart(const std::string& target) {
  Service* s = Find(target);
  if (s == nullptr) return Status::InvalidArgument("no process " + target);
  // Started by an earlier attempt that gave up waiting for it: only wait again.
  if (!s->process().Running()) {
    Status st = s->Restart();
    if (!st.ok() && !s->process().Running()) return st;
  }
  return WaitServing(target);
}

int ChaosCluster::BusiestCoordinator() {
  auto node = pg_->QueryValue(
      "treaty",
      "SELECT split_part(owner, '#', 1) FROM treaty.transactions WHERE status NOT IN "
      "('committed', 'aborted') AND lease_until > now() GROUP BY 1 ORDER BY count(*) DESC LIMIT 1");
  if (!node.ok() || node->rfind("node-", 0) != 0) return -1;
  int i = std::atoi(node->c_str() + 5);
  return i >= 0 && i < kCoordinators ? i : -1;
}

Status ChaosCluster::Pause(int coordinator) {
  return coordinators_[coordinator]->process().Signal(SIGSTOP);
}

Status ChaosCluster::Resume(int coordinator) {
  return coordinators_[coordinator]->process().Signal(SIGCONT);
}

Status ChaosCluster::Skew(int coordinator, int seconds) {
  Service& s = *coordinators_[coordinator];
  // Killed, not stopped: a graceful stop waits for long-polling clients (wait: true).
  auto killed = s.Kill();
  if (!killed.ok()) return killed.status();
  Status st = s.Restart(CoordinatorEnv(coordinator, seconds));
  return st.ok() ? WaitServing("treatyd-" + std::to_string(coordinator)) : st;
}

Status ChaosCluster::ArmFaultPoint(int coordinator, const std::string& variable,
                                   const std::string& point) {
  Service& s = *coordinators_[coordinator];
  // Killed, not stopped: a graceful stop waits for long-polling clients (wait: true).
  auto killed = s.Kill();
  if (!killed.ok()) return killed.status();
  auto env = CoordinatorEnv(coordinator, 0);
  env.emplace_back(variable, point);
  // Not waited for: it may reach its point before it is ready, even before it wrote its address
  // (then the start "fails", and the nemesis heals the crash or the pause all the same).
  Status st = s.Restart(env);
  s.SetEnvOfNextStart(CoordinatorEnv(coordinator, 0));
  if (!st.ok() && (!s.process().Running() || Stopped(coordinator))) return Status::Ok();
  return st;
}

bool ChaosCluster::Alive(const std::string& target) {
  Service* s = Find(target);
  return s != nullptr && s->process().Running();
}

bool ChaosCluster::Stopped(int coordinator) {
  return harness::IsStopped(coordinators_[coordinator]->process().pid());
}

Status ChaosCluster::RestartStore(bool immediate) {
  Status st = pg_->Stop(immediate);
  if (!st.ok()) return st;
  return pg_->Restart();
}

Status ChaosCluster::ParticipantFault(const std::string& service, const std::string& op,
                                      const std::string& action, int delay_ms) {
  Service* s = Find(service);
  if (s == nullptr) return Status::InvalidArgument("no participant " + service);
  auto r = harness::HttpCall("POST", s->base_url() + "/admin/faults",
                             R"({"op":")" + op + R"(","action":")" + action + R"(","ms":)" +
                                 std::to_string(delay_ms) + "}",
                             std::chrono::seconds(5));
  if (!r.ok()) return r.status();
  if (r->status != 200) return Status::Internal("fault switch answered " + r->body);
  return Status::Ok();
}

}  // namespace treaty::chaos
