// treaty-relay: publishes a service database's outbox table to Kafka (see relay.h).
//
//   treaty-relay [--config FILE] [--address-file FILE] | --check-config FILE
//
// Serves GET /metrics (Prometheus text) and GET /healthz. Stops cleanly on SIGTERM.

#include <atomic>
#include <iostream>
#include <thread>

#include "common/http/http_server.h"
#include "common/log.h"
#include "common/service_main.h"
#include "config/treaty_config.h"
#include "outbox/relay.h"
#include "outbox/wal_relay.h"

namespace treaty::outbox {
namespace {

const Logger kLog("treaty-relay");

// Serves /healthz and /metrics for `relay` (the polling or the WAL one) and runs it until a stop
// signal; 0, or kExitServeFailed when it cannot listen.
template <typename Relay>
int ServeUntilStopped(Relay& relay, const RelayConfig& config, const ServeArgs& args) {
  http::Router router;
  router.Add("GET", "/healthz", [](const http::ApiRequest&) {
    return http::ApiResponse{200, "application/json", R"({"status":"ok"})"};
  });
  router.Add("GET", "/metrics", [&](const http::ApiRequest&) {
    return http::ApiResponse{200, "text/plain; version=0.0.4", relay.Metrics()};
  });
  auto server = ServeAndAnnounce(config.listen, router, args.address_file, kLog);
  if (!server.ok()) return kExitServeFailed;
  std::atomic<bool> stop{false};
  std::thread worker([&] { relay.Run(stop); });
  kLog.Info("stop requested", {{"signal", WaitForStopSignal()}});
  stop = true;
  worker.join();
  (*server)->Stop();
  return 0;
}

// mode: wal (wal_relay.h): one producer; the slot and publication are set up before the
// address is announced, so that events written from then on are in the slot.
int ServeWal(const RelayConfig& config, const ServeArgs& args) {
  auto publisher = KafkaPublisher::Create(config.bootstrap_servers, config.delivery_timeout);
  if (!publisher.ok()) {
    kLog.Error("cannot create the Kafka producer", {{"error", publisher.status().message()}});
    return kExitBadConfig;
  }
  WalRelay relay(config, std::move(*publisher), kLog);
  Status setup = relay.Setup();
  if (!setup.ok()) {
    kLog.Error("cannot set up the publication and slot yet; retrying",
               {{"error", setup.message()}});
  }
  if (int failed = ServeUntilStopped(relay, config, args); failed != 0) return failed;
  kLog.Info("stopped", {});
  return 0;
}

int Serve(const RelayConfig& config, const ServeArgs& args) {
  SetLogLevel(*ParseLogLevel(config.log_level));
  kLog.Info("starting", {{"database", MaskUrlPassword(config.database_url)},
                         {"table", config.table},
                         {"mode", config.mode},
                         {"kafka", config.bootstrap_servers},
                         {"batch_size", std::to_string(config.batch_size)},
                         {"workers", std::to_string(config.workers)}});
  if (config.mode == "wal") return ServeWal(config, args);
  std::vector<std::unique_ptr<KafkaPublisher>> publishers;
  for (int64_t w = 0; w < config.workers; ++w) {
    auto publisher = KafkaPublisher::Create(config.bootstrap_servers, config.delivery_timeout);
    if (!publisher.ok()) {
      kLog.Error("cannot create the Kafka producer", {{"error", publisher.status().message()}});
      return kExitBadConfig;
    }
    publishers.push_back(std::move(*publisher));
  }
  OutboxRelay relay(config, std::move(publishers), kLog);
  if (int failed = ServeUntilStopped(relay, config, args); failed != 0) return failed;
  kLog.Info("stopped", {{"published", std::to_string(relay.counters().published.load())}});
  return 0;
}

}  // namespace
}  // namespace treaty::outbox

int main(int argc, char** argv) {
  using namespace treaty;
  return RunServiceMain(
      argc, argv,
      ServiceMainSpec{
          .name = "treaty-relay",
          .description = "treaty-relay: publishes a service's outbox table to Kafka.",
          .check_config =
              [](const std::string& path) {
                auto c = outbox::LoadRelayConfig(path, ProcessEnvironment());
                return c.ok() ? Status::Ok() : c.status();
              },
          .serve =
              [](const ServeArgs& args) {
                auto c = outbox::LoadRelayConfig(args.config_path, ProcessEnvironment());
                if (!c.ok()) {
                  std::cerr << c.status().message() << "\n";
                  return kExitBadConfig;
                }
                return outbox::Serve(*c, args);
              },
      });
}
