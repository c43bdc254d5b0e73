#pragma once

// The configuration every demo participant reads (order-svc, inventory-svc):
//
//   listen: 127.0.0.1:8502
//   public_url: http://inventory:8502                # how treatyd reaches it; default from listen
//   database: { url: postgresql://..., pool_size: 8 }
//   coordinator: { url: http://127.0.0.1:8420, token: ... }   # asked about prepared transactions
//   sweep: { interval: 10s, older_than: 30s }         # presumed-abort sweep of prepared xacts
//   log: { level: info }
//   events: { topic: orders.events }
//   kafka: { bootstrap_servers: "", group: "" }      # consume events when set
//   retention: { barrier_window: 7d, inbox_window: 7d, batch: 1000, interval: 1m }
//
// Environment overrides use the service's prefix: TREATY_INVENTORY_SVC_DATABASE_URL, ...

#include <string>

#include "common/duration.h"
#include "common/status.h"
#include "config/config_reader.h"

namespace treaty::participant {

struct ParticipantConfig {
  HostPort listen{"127.0.0.1", 0};
  // The base URL treatyd calls this service back at (the msg check-back query URL it registers).
  // Empty: http:// and the address it listens on, which is wrong when that is 0.0.0.0 (a
  // container) or when treatyd reaches it under another name.
  std::string public_url;
  std::string database_url = "postgresql://postgres@127.0.0.1:5432/postgres";
  int64_t pool_size = 8;
  std::string coordinator_url = "http://127.0.0.1:8420";
  // A client token for treatyd (auth.client_tokens there); empty: none sent.
  std::string coordinator_token;
  Duration sweep_interval = std::chrono::seconds(10);
  Duration sweep_older_than = std::chrono::seconds(30);
  std::string log_level = "info";
  // Events: the topic order events go to (outbox) and come from (consumer). Consuming is on when
  // kafka.bootstrap_servers is set.
  std::string events_topic = "orders.events";
  std::string kafka_bootstrap_servers;
  std::string kafka_group;  // default: the service's name
  // Retention of the kit's own tables (docs/participants.md, "Retention"). Barrier rows (TCC,
  // saga, msg marks) and finished 2PC marks of a gid are deleted once all of them are older
  // than `barrier_window` and the coordinator does not list the gid as unfinished; inbox rows
  // once older than `inbox_window` (the dedupe window). `batch` rows a statement, a round every
  // `interval`.
  Duration retention_barrier_window = std::chrono::hours(24 * 7);
  Duration retention_inbox_window = std::chrono::hours(24 * 7);
  int64_t retention_batch = 1000;
  Duration retention_interval = std::chrono::minutes(1);
};

Result<ParticipantConfig> LoadParticipantConfig(const std::string& path,
                                                const std::string& env_prefix,
                                                const Environment& env);

}  // namespace treaty::participant
