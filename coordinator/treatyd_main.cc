// treatyd: the Treaty coordinator.
//
//   treatyd [--config FILE] [--address-file FILE]   serve
//   treatyd --check-config FILE                      validate FILE and exit (0 when valid)
//
// Exit codes: 0 after a clean stop (SIGTERM or SIGINT), 2 for bad options or config, 1 when
// serving failed (e.g. the listen address is taken).

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <mutex>
#include <thread>

#include "common/http/http_server.h"
#include "common/http/router.h"
#include "common/json_text.h"
#include "common/kafka/kafka_publisher.h"
#include "common/log.h"
#include "common/service_main.h"
#include "config/treaty_config.h"
#include "coordinator/api/access_policy.h"
#include "coordinator/api/transactions_api.h"
#include "coordinator/api/treatyd_routes.h"
#include "coordinator/core/transaction_driver.h"
#include "coordinator/core/transaction_service.h"
#include "coordinator/core/twopc_processor.h"
#include "coordinator/env_crash_points.h"
#include "coordinator/logging_observer.h"
#include "coordinator/metrics/timed_store.h"
#include "coordinator/metrics/treaty_metrics.h"
#include "coordinator/saga/saga_processor.h"
#include "coordinator/saga/saga_registry.h"
#include "coordinator/store/pg_retention.h"
#include "coordinator/store/pg_store.h"
#include "coordinator/store/pg_transaction_store.h"
#include "coordinator/store/sharded_store.h"
#include "coordinator/store/store_clock.h"
#include "coordinator/store/store_startup.h"
#include "coordinator/tracing/otlp_exporter.h"
#include "coordinator/transport/http_branch_transport.h"
#include "coordinator/webhooks/webhook_deliverer.h"
#include "mqtx/kafka_message_sink.h"
#include "mqtx/msg_processor.h"
#include "tcc/tcc_processor.h"

namespace treaty {
namespace {

const Logger kLog("treatyd");

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "treatyd";
  std::string name = buf;
  for (char& c : name) {
    if (!core::ValidId(std::string(1, c), 1)) c = '-';
  }
  return name;
}

// Where relative saga paths in `config` are looked up: beside the config file.
std::string ConfigDir(const TreatyConfig& config) {
  size_t slash = config.source.rfind('/');
  if (config.source == "(defaults)" || slash == std::string::npos) return ".";
  return config.source.substr(0, slash);
}

// /readyz: once every shard has come up (migrated, its slot map checked), ready while at least
// one shard answers (a shard's outage stops only its own transactions, so a load balancer must
// not take treatyd away for it); the body says how each shard is. 503 before, or when none
// answers.
http::ApiResponse Readiness(const std::vector<std::unique_ptr<store::StoreStartup>>& startups,
                            const std::vector<std::unique_ptr<store::PgStore>>& stores) {
  if (startups.size() == 1) {  // one store: the body as it always was
    if (!startups[0]->migrated()) {
      return http::ApiResponse{
          503, "application/json",
          R"({"status":"starting","store":)" +
              JsonQuote(startups[0]->last_error().empty() ? "connecting"
                                                          : startups[0]->last_error()) +
              "}"};
    }
    Status s = stores[0]->Ping();
    if (!s.ok()) {
      return http::ApiResponse{
          503, "application/json",
          R"({"status":"unavailable","store":)" + JsonQuote(s.message()) + "}"};
    }
    return http::ApiResponse{200, "application/json", R"({"status":"ready"})"};
  }
  std::string shards;
  int up = 0, starting = 0;
  for (size_t i = 0; i < startups.size(); ++i) {
    std::string state;
    if (!startups[i]->migrated()) {
      ++starting;
      state =
          R"({"status":"starting","store":)" +
          JsonQuote(startups[i]->last_error().empty() ? "connecting" : startups[i]->last_error()) +
          "}";
    } else if (Status s = stores[i]->Ping(); !s.ok()) {
      state = R"({"status":"unavailable","store":)" + JsonQuote(s.message()) + "}";
    } else {
      ++up;
      state = R"({"status":"ready"})";
    }
    shards += (i ? "," : "") + state;
  }
  const std::string status = up == static_cast<int>(startups.size()) ? "ready"
                             : up > 0                                ? "degraded"
                             : starting > 0                          ? "starting"
                                                                     : "unavailable";
  // Until every shard has come up once, not ready: a client sent here would meet 503s for the
  // shards still starting (usually a moment). Afterwards an outage of some is "degraded".
  return http::ApiResponse{up > 0 && starting == 0 ? 200 : 503, "application/json",
                           R"({"status":")" + status + R"(","shards":[)" + shards + "]}"};
}

// The store's gauges summed over the shards that answer (the oldest ages are the oldest of any).
// `up` gets, for each shard, whether it answered.
Result<metrics::StoreGauges> ShardGauges(
    store::ShardedStore& sharded,
    const std::vector<std::unique_ptr<store::PgTransactionStore>>& stores,
    const std::vector<std::unique_ptr<store::PgRetention>>& retentions, std::vector<bool>* up) {
  metrics::StoreGauges g;
  up->assign(stores.size(), false);
  Status first_error = Status::Unavailable("no store shard is ready yet");
  int answered = 0;
  for (size_t i = 0; i < stores.size(); ++i) {
    if (!sharded.Ready(static_cast<int>(i))) continue;
    auto f = stores[i]->InFlight();
    if (!f.ok()) {
      if (answered == 0) first_error = f.status();
      continue;
    }
    ++answered;
    (*up)[i] = true;
    for (const auto& [status, n] : f->first) g.in_flight[status] += n;
    g.recovery_lag_seconds = std::max(g.recovery_lag_seconds, f->second);
    if (auto age = retentions[i]->OldestFinishedAge(); age.ok()) {
      g.oldest_finished_age_seconds = std::max(g.oldest_finished_age_seconds.value_or(0), *age);
    }
  }
  if (answered == 0) return first_error;
  return g;
}

// treaty_store_shard_up: whether each shard answered the scrape (0 while it starts or is down),
// the per-shard view behind /readyz's "degraded".
std::string RenderShardUp(const std::vector<bool>& up) {
  std::string out =
      "# HELP treaty_store_shard_up Whether the store shard answered this scrape (1) or not (0).\n"
      "# TYPE treaty_store_shard_up gauge\n";
  for (size_t i = 0; i < up.size(); ++i) {
    out +=
        "treaty_store_shard_up{shard=\"" + std::to_string(i) + "\"} " + (up[i] ? "1" : "0") + "\n";
  }
  return out;
}

int Serve(const TreatyConfig& config, const std::string& address_file) {
  SetLogLevel(*ParseLogLevel(config.log.level));
  {
    std::string described;
    for (const auto& [k, v] : DescribeConfig(config)) described += k + "=" + v + " ";
    kLog.Info("starting", {{"config", config.source}, {"effective", described}});
  }

  const std::string node_id = config.node_id.empty() ? HostName() : config.node_id;
  saga::SagaRegistry sagas(config.sagas, ConfigDir(config), ProcessEnvironment());
  if (Status s = sagas.Reload(); !s.ok()) {
    std::cerr << s.message() << "\n";
    kLog.Error("saga definitions are invalid; not starting", {{"error", s.message()}});
    return kExitBadConfig;
  }
  kLog.Info("saga definitions loaded", {{"count", std::to_string(sagas.List().size())}});
  // The store: one database, or several shards (store.shards), each with its own connections,
  // migrations, retention purge and webhook deliveries; the core sees them as one store through
  // the routing ShardedStore (docs/scaling.md). One shard is the same as store.url.
  const std::vector<std::string>& shard_urls = config.store.shards;
  const int shard_count = static_cast<int>(shard_urls.size());
  const store::SlotMap slot_map = store::SlotMap::Even(shard_count);
  std::vector<std::unique_ptr<store::PgStore>> pg_stores;
  std::vector<std::unique_ptr<store::PgTransactionStore>> tx_stores;
  std::vector<store::StoreShard> shard_parts;
  for (const std::string& url : shard_urls) {
    pg_stores.push_back(std::make_unique<store::PgStore>(url, config.store.connect_timeout));
    tx_stores.push_back(std::make_unique<store::PgTransactionStore>(store::PgStoreOptions{
        .url = url,
        .connect_timeout = config.store.connect_timeout,
        .pool_size = static_cast<int>(config.store.pool_size),
        .group_commit = config.store.group_commit,
        .unforced_records = config.store.unforced_records,
    }));
    shard_parts.push_back(store::StoreShard{tx_stores.back().get(), tx_stores.back().get()});
  }
  store::ShardedStore tx_store(std::move(shard_parts), slot_map);
  // Times that are stored or compared with stored ones follow the store's clock, not this host's.
  store::StoreClock clock(shard_urls, config.store.connect_timeout);
  clock.Start();
  auto tokens = LoadTokens(config.auth);
  if (!tokens.ok()) {
    std::cerr << tokens.status().message() << "\n";
    kLog.Error("auth tokens cannot be read; not starting", {{"error", tokens.status().message()}});
    return kExitBadConfig;
  }
  if (config.auth.none) {
    kLog.Warn("auth.none is set: anyone who can reach " + config.listen.ToString() +
              " may start, abort and retry transactions");
  }
  transport::HttpBranchTransport transport(
      /*max_idle_per_host=*/32, /*call_threads=*/32,
      transport::TransportTls{.ca_file = config.tls.ca_file,
                              .client_cert_file = config.tls.client_cert_file,
                              .client_key_file = config.tls.client_key_file});
  EnvCrashPoints crash_points;
  LoggingObserver log_observer;
  // Spans go to the collector when one is configured (tracing.otlp_endpoint).
  std::unique_ptr<tracing::OtlpExporter> spans;
  if (!config.tracing.otlp_endpoint.empty()) {
    spans = std::make_unique<tracing::OtlpExporter>(
        tracing::OtlpOptions{.endpoint = config.tracing.otlp_endpoint,
                             .service_name = config.tracing.service_name,
                             .max_queue = static_cast<size_t>(config.tracing.max_queue),
                             .max_batch = static_cast<size_t>(config.tracing.max_batch),
                             .flush_interval = config.tracing.flush_interval,
                             .timeout = config.tracing.timeout,
                             .clock = &clock},
        &log_observer);
  }
  metrics::TreatyMetrics observer(spans ? static_cast<core::DriverObserver*>(spans.get())
                                        : &log_observer);
  core::TwoPhaseCommitProcessor twopc;
  core::TccProcessor tcc;
  core::SagaProcessor saga;
  core::MsgProcessor msg(static_cast<int>(config.msg.max_checks));
  std::unique_ptr<broker::KafkaMessageSink> kafka_sink;
  if (auto publisher = kafka::KafkaPublisher::Create(config.kafka.bootstrap_servers,
                                                     config.kafka.delivery_timeout);
      publisher.ok()) {
    kafka_sink = std::make_unique<broker::KafkaMessageSink>(std::move(*publisher));
  } else {
    kLog.Error("no Kafka producer: transactional messages will wait",
               {{"error", publisher.status().message()}});
  }
  // The core sees the store through the timer: treaty_store_call_seconds{op}.
  metrics::TimedStore timed_store(tx_store, observer);
  core::TransactionDriver driver(
      core::DriverOptions{
          // A new name for each run: a predecessor still alive cannot write under its leases.
          .owner = node_id + "#" + core::RandomIdGenerator().NewGid().substr(0, 8),
          .node_id = node_id,
          .workers = static_cast<int>(config.scheduler.workers),
          .poll_interval = config.scheduler.poll_interval,
          .lease = config.scheduler.lease,
          .branch_call_timeout = config.timeouts.branch_call,
          // The producer waits the delivery timeout and a 5 s margin (KafkaPublisher).
          .publish_timeout = std::min<Duration>(
              config.kafka.delivery_timeout + std::chrono::seconds(5), config.scheduler.lease / 2),
          .max_queued = static_cast<int>(config.scheduler.max_queued),
          .retry = core::RetryPolicy{config.retry.initial, config.retry.max,
                                     config.retry.multiplier, config.retry.jitter},
      },
      timed_store, transport, clock, core::RandomIdGenerator(), crash_points,
      {&twopc, &tcc, &saga, &msg}, &observer, kafka_sink.get());
  core::TransactionService service(timed_store, driver, clock, core::RandomIdGenerator(),
                                   crash_points, config.timeouts.prepare,
                                   config.timeouts.msg_check_back);

  // Per shard: the retention purge (docs/recovery.md), on connections of its own, once the
  // schema (its index) is current; completion webhooks, delivered from the shard's rows
  // (migration 11) once it is migrated.
  std::vector<std::unique_ptr<store::PgRetention>> retentions;
  std::vector<std::unique_ptr<store::RetentionPurger>> purgers;
  std::vector<std::unique_ptr<webhooks::WebhookDeliverer>> webhook_deliverers;
  for (const std::string& url : shard_urls) {
    retentions.push_back(std::make_unique<store::PgRetention>(url, config.store.connect_timeout));
    purgers.push_back(std::make_unique<store::RetentionPurger>(
        *retentions.back(),
        store::RetentionPurgerOptions{.history = config.retention.history,
                                      .batch = static_cast<int>(config.retention.batch),
                                      .interval = config.retention.interval,
                                      .pause = config.retention.pause},
        [&observer](const store::Purged& p) {
          observer.OnPurged("transactions", p.transactions);
          observer.OnPurged("decision_log", p.decision_log);
          observer.OnPurged("webhook_deliveries", p.webhook_deliveries);
        }));
    webhook_deliverers.push_back(
        std::make_unique<webhooks::WebhookDeliverer>(webhooks::WebhookOptions{
            .store_url = url,
            .connect_timeout = config.store.connect_timeout,
            .secret = config.webhooks.secret,
            .poll_interval = config.webhooks.poll_interval,
            .timeout = config.webhooks.timeout,
            .initial_backoff = config.retry.initial,
            .max_backoff = config.webhooks.max_backoff,
        }));
  }

  // A shard whose stored slot map disagrees with the configuration: treatyd stops (exit 2).
  std::atomic<bool> refused{false};
  // Each shard comes up on its own (migrations, then its stored slot map checked), so that a
  // shard down at start holds up only its own transactions. The driver starts with the first
  // shard that is up: recovery begins with its first poll.
  std::once_flag driver_started;
  std::vector<std::unique_ptr<store::StoreStartup>> startups;
  for (int i = 0; i < shard_count; ++i) {
    startups.push_back(std::make_unique<store::StoreStartup>(
        [&, i]() -> Result<int> {
          auto applied = pg_stores[static_cast<size_t>(i)]->Migrate();
          if (!applied.ok()) return applied;
          Status checked =
              pg_stores[static_cast<size_t>(i)]->CheckShardMap(i, shard_count, slot_map.Text());
          if (!checked.ok()) return checked;
          return applied;
        },
        config.retry,
        [&, i] {
          // This node's predecessors' leases on the shard, as the driver's start frees them on
          // the shards up by then (best effort: they also expire).
          (void)tx_stores[static_cast<size_t>(i)]->ReleaseLeases(node_id);
          tx_store.SetReady(i);
          std::call_once(driver_started, [&] {
            // Nothing is stamped or found due by this host's clock: ready only once the store's
            // is read.
            for (Status s = clock.Read(); !s.ok(); s = clock.Read()) {
              kLog.Warn("cannot read the store's clock yet", {{"error", s.message()}});
              std::this_thread::sleep_for(config.retry.initial);
            }
            for (Status s = driver.Start(); !s.ok(); s = driver.Start()) {
              kLog.Warn("cannot start the scheduler yet", {{"error", s.message()}});
              std::this_thread::sleep_for(config.retry.initial);
            }
            kLog.Info("scheduler started",
                      {{"node_id", node_id}, {"owner", driver.options().owner}});
          });
          if (shard_count > 1) {
            kLog.Info("store shard ready",
                      {{"shard", std::to_string(i)}, {"slots", slot_map.RangesOf(i)}});
          }
          webhook_deliverers[static_cast<size_t>(i)]->Start();
          purgers[static_cast<size_t>(i)]->Start();
        },
        [&, i](const Status& s) {
          const std::string message = "store shard " + std::to_string(i) + " (" +
                                      MaskUrlPassword(shard_urls[static_cast<size_t>(i)]) +
                                      "): " + s.message();
          std::cerr << message << "\n";
          kLog.Error("the store disagrees with the configuration; not starting",
                     {{"shard", std::to_string(i)}, {"error", message}});
          refused = true;
          ::kill(::getpid(), SIGTERM);
        }));
  }
  auto any_shard_up = [&] {
    for (const auto& s : startups) {
      if (s->migrated()) return true;
    }
    return false;
  };

  api::AccessPolicy access(std::move(*tokens), config.limits.rate_per_second,
                           config.limits.rate_burst);
  api::TransactionsApi transactions(
      service, driver.processors(), &sagas,
      api::TransactionsApiOptions{
          .ready = any_shard_up,
          .max_branches = static_cast<size_t>(config.limits.max_branches),
          .max_payload_bytes = static_cast<size_t>(config.limits.max_payload_bytes),
          .allowlist = std::make_shared<api::UrlAllowlist>(config.participants.allow),
          .clock = &clock,
          .caller_name = [&access](const http::ApiRequest& r) { return access.CallerName(r); },
          .saga_versions = &tx_store,
          .propagate_headers = config.propagation.headers,
          .secret_headers = {config.propagation.secret.begin(), config.propagation.secret.end()},
      });
  api::OperatorEndpoints endpoints{
      .health =
          [] {
            return http::ApiResponse{200, "application/json", R"({"status":"ok"})"};
          },
      .ready = [&] { return Readiness(startups, pg_stores); },
      .metrics =
          [&] {
            std::vector<bool> up;
            std::string body = observer.Render([&]() -> Result<metrics::StoreGauges> {
              return ShardGauges(tx_store, tx_stores, retentions, &up);
            });
            return http::ApiResponse{200, "text/plain; version=0.0.4",
                                     body + RenderShardUp(up) +
                                         (spans ? spans->RenderMetrics() : "") +
                                         webhooks::RenderUndeliveredMetrics(webhook_deliverers)};
          },
      .traffic =
          [&] {
            return http::ApiResponse{200, "application/json", observer.traffic().Json()};
          },
  };
  http::Router router;
  api::RegisterTreatydRoutes(router, transactions, endpoints);
  router.SetGuard(
      [&access](const http::ApiRequest& r, http::Access level) { return access.Check(r, level); });

  const int threads = static_cast<int>(config.limits.threads);
  auto server = ServeAndAnnounce(
      http::HttpServerOptions{
          .listen = config.listen,
          .max_body_bytes = static_cast<size_t>(config.limits.max_body_bytes),
          .max_threads = threads,
          .max_queued = std::max(1, static_cast<int>(config.limits.max_connections) - threads),
          .read_timeout = config.limits.read_timeout,
          .tls_cert_file = config.tls.cert_file,
          .tls_key_file = config.tls.key_file,
          .tls_client_ca_file = config.tls.client_ca_file,
      },
      router, address_file, kLog);
  if (!server.ok()) return kExitServeFailed;

  kLog.Info("stop requested", {{"signal", WaitForStopSignal([&] {
                                  Status s = sagas.Reload();
                                  if (s.ok()) {
                                    kLog.Info("saga definitions reloaded (SIGHUP)",
                                              {{"count", std::to_string(sagas.List().size())}});
                                  } else {
                                    kLog.Error(
                                        "saga definitions not reloaded; the loaded ones stay",
                                        {{"error", s.message()}});
                                  }
                                })}});
  (*server)->Stop();
  for (auto& purger : purgers) purger->Stop();
  driver.Stop();
  if (refused) {
    kLog.Info("stopped: the store disagrees with the configuration");
    return kExitBadConfig;
  }
  kLog.Info("stopped");
  return 0;
}

}  // namespace
}  // namespace treaty

int main(int argc, char** argv) {
  using namespace treaty;
  return RunServiceMain(
      argc, argv,
      ServiceMainSpec{
          .name = "treatyd",
          .description = "Treaty: a distributed transaction coordinator.",
          .check_config =
              [](const std::string& path) {
                auto c = LoadTreatyConfig(path, ProcessEnvironment());
                if (!c.ok()) return c.status();
                auto sagas =
                    saga::LoadSagaDefinitions(c->sagas, ConfigDir(*c), ProcessEnvironment());
                return sagas.ok() ? Status::Ok() : sagas.status();
              },
          .serve =
              [](const ServeArgs& args) {
                auto config = args.config_path.empty()
                                  ? ParseTreatyConfig("", "(defaults)", ProcessEnvironment())
                                  : LoadTreatyConfig(args.config_path, ProcessEnvironment());
                if (!config.ok()) {
                  std::cerr << config.status().message() << "\n";
                  return kExitBadConfig;
                }
                return Serve(*config, args.address_file);
              },
      });
}
