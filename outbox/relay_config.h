#pragma once

// treaty-relay's configuration (docs/outbox.md), read like treaty.yaml: every key has a default,
// TREATY_RELAY_* environment variables override, errors name the file, line and key.

#include <string>

#include "common/duration.h"
#include "common/status.h"
#include "config/config_reader.h"

namespace treaty::outbox {

struct RelayConfig {
  HostPort listen{"127.0.0.1", 8430};  // /metrics and /healthz
  std::string database_url = "postgresql://postgres@127.0.0.1:5432/postgres";
  std::string table = "treaty_outbox";
  std::string bootstrap_servers = "127.0.0.1:9092";
  Duration delivery_timeout = std::chrono::seconds(30);  // a batch's messages must be acked by then
  int64_t batch_size = 500;
  int64_t workers = 2;  // batches in flight at once, each with its own session and producer
  Duration poll_interval = std::chrono::milliseconds(500);  // fallback to LISTEN/NOTIFY
  std::string after_send = "mark";                          // mark | delete
  Duration retention = std::chrono::hours(24);              // sent rows older than this are removed
  int64_t retention_batch = 1000;  // sent rows removed per statement (never one long delete)
  std::string poison = "block";    // block | dead_letter
  Duration retry_initial = std::chrono::milliseconds(200);
  Duration retry_max = std::chrono::seconds(10);
  std::string log_level = "info";
  // polling: batches claimed from the table (relay.h); wal: the database's write-ahead log
  // streamed through a logical replication slot (wal_relay.h).
  std::string mode = "polling";
  std::string wal_slot = "treaty_relay";                 // the logical replication slot (pgoutput)
  std::string wal_publication = "treaty_outbox";         // the publication the slot streams
  Duration wal_standby_retry = std::chrono::seconds(1);  // a standby asks for the slot this often
  int64_t wal_max_held = 100000;  // events held behind failed ones before the stream pauses
  // Events per publish in mode wal (batch_size is the polling relay's): a batch costs no
  // database work here, only the producer's round trip, so larger batches pay (finding 37).
  int64_t wal_batch_size = 5000;
};

Result<RelayConfig> LoadRelayConfig(const std::string& path, const Environment& env);

}  // namespace treaty::outbox
