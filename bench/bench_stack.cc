#include "bench/bench_stack.h"

#include <iostream>

#include "bench/run_options.h"
#include "common/http/http_client.h"
#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/test_support.h"

namespace treaty::bench {

using harness::DevBroker;
using harness::PgCluster;
using harness::Service;
using harness::ServiceSpec;

Status BenchStack::Start() {
  Say("starting PostgreSQL (durable: fsync and synchronous_commit on), the dev broker, "
      "the no-op participant and treatyd");
  auto pg = PgCluster::Start(
      harness::PgClusterOptions{.durable = true, .max_connections = 400, .logical_decoding = true});
  if (!pg.ok()) return pg.status();
  pg_ = std::move(*pg);
  for (const char* db : {"treaty", "ceiling", "outbox"}) {
    if (Status s = pg_->CreateDatabase(db); !s.ok()) return s;
  }
  for (int i = 1; i < shards_; ++i) {
    auto more =
        PgCluster::Start(harness::PgClusterOptions{.durable = true, .max_connections = 400});
    if (!more.ok()) return more.status();
    if (Status s = (*more)->CreateDatabase("treaty"); !s.ok()) return s;
    more_shards_.push_back(std::move(*more));
  }
  auto broker = DevBroker::Start();
  if (!broker.ok()) return broker.status();
  broker_ = std::move(*broker);
  auto participant =
      Service::Start(ServiceSpec{.name = "bench-participant",
                                 .binary = kParticipantPath,
                                 .config_yaml = "listen: 127.0.0.1:0\nthreads: 256\n"});
  if (!participant.ok()) return participant.status();
  participant_ = std::move(*participant);
  return StartTreatyd();
}

Status BenchStack::StartTreatyd() {
  std::string store = "url: \"" + pg_->Url("treaty") + "\"";
  if (!more_shards_.empty()) {
    store = "shards: [\"" + pg_->Url("treaty") + "\"";
    for (const auto& more : more_shards_) store += ", \"" + more->Url("treaty") + "\"";
    store += "]";
  }
  auto t = Service::Start(
      ServiceSpec{.name = "treatyd",
                  .binary = harness::kTreatydPath,
                  .config_yaml = "listen: 127.0.0.1:0\nnode_id: bench\n"
                                 "store: { " +
                                 store +
                                 ", pool_size: 32 }\n"
                                 "kafka: { bootstrap_servers: \"" +
                                 broker_->bootstrap() +
                                 "\" }\n"
                                 "scheduler: { workers: 32 }\n"
                                 // The load generator is one caller: the default per-caller rate
                                 // limit (2,000 requests/s) would cap what is measured (msg makes
                                 // two requests per transaction).
                                 "limits: { rate_per_second: 0 }\n"
                                 "log: { level: warn }\n"});
  if (!t.ok()) return t.status();
  treatyd_ = std::move(*t);
  return WaitReady();
}

Status BenchStack::WaitReady() {
  bool ready = harness::WaitUntil(
      [&] {
        auto r = http::HttpCall("GET", treatyd_->base_url() + "/readyz");
        return r.ok() && r->status == 200;
      },
      std::chrono::seconds(60));
  return ready ? Status::Ok() : Status::Unavailable("treatyd did not become ready");
}

Status BenchStack::ServeUntilStdinCloses() {
  std::cout << "{\"treatyd\":\"" << treatyd_->base_url()
            << "\",\"treatyd_pid\":" << treatyd_->process().pid() << ",\"participant\":\""
            << participant_->base_url() << "\",\"store\":\"" << pg_->Url("treaty")
            << "\",\"kafka\":\"" << broker_->bootstrap() << "\"}" << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return Status::Ok();
}

Status BenchStack::PreloadOutbox(const std::string& table, int64_t rows) {
  return pg_->Execute(
      "outbox", "INSERT INTO " + table +
                    " (event_id, aggregate_type, aggregate_id, event_type, topic, key, payload) "
                    "SELECT 'e-' || g, 'order', (g % 1000)::text, 'OrderPlaced', 'bench.outbox', "
                    "(g % 1000)::text, jsonb_build_object('order', g, 'sku', 'A1', 'qty', 1) "
                    "FROM generate_series(1, " +
                    std::to_string(rows) + ") g");
}

}  // namespace treaty::bench
