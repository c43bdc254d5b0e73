#include "outbox/relay_config.h"

#include <cctype>
#include <fstream>
#include <sstream>

namespace treaty::outbox {

namespace {

bool PlainIdentifier(const std::string& name) {
  bool plain =
      !name.empty() && (std::islower(static_cast<unsigned char>(name[0])) || name[0] == '_');
  for (char ch : name) {
    plain = plain && (std::islower(static_cast<unsigned char>(ch)) ||
                      std::isdigit(static_cast<unsigned char>(ch)) || ch == '_');
  }
  return plain && name.size() <= 63;
}

}  // namespace

Result<RelayConfig> LoadRelayConfig(const std::string& path, const Environment& env) {
  auto text = ReadConfigText(path);
  if (!text.ok()) return text.status();
  RelayConfig c;
  ConfigReader r(path.empty() ? "(defaults)" : path, *text, env, "TREATY_RELAY_");
  r.Address("listen", &c.listen);
  r.Url("database.url", &c.database_url, {"postgresql", "postgres"});
  r.NonEmptyString("table", &c.table);
  r.NonEmptyString("kafka.bootstrap_servers", &c.bootstrap_servers);
  r.DurationAtLeast("kafka.delivery_timeout", &c.delivery_timeout, std::chrono::seconds(1));
  r.Int("batch_size", &c.batch_size, 1, 100000);
  r.Int("workers", &c.workers, 1, 16);
  r.DurationAtLeast("poll_interval", &c.poll_interval, std::chrono::milliseconds(10));
  r.OneOf("after_send", &c.after_send, {"mark", "delete"});
  r.DurationAtLeast("retention", &c.retention, std::chrono::seconds(1));
  r.Int("retention_batch", &c.retention_batch, 1, 100000);
  r.OneOf("poison", &c.poison, {"block", "dead_letter"});
  r.DurationAtLeast("retry.initial", &c.retry_initial, std::chrono::milliseconds(1));
  r.DurationAtLeast("retry.max", &c.retry_max, std::chrono::milliseconds(1));
  r.OneOf("log.level", &c.log_level, {"debug", "info", "warn", "error"});
  r.OneOf("mode", &c.mode, {"polling", "wal"});
  r.NonEmptyString("wal.slot", &c.wal_slot);
  r.NonEmptyString("wal.publication", &c.wal_publication);
  r.DurationAtLeast("wal.standby_retry", &c.wal_standby_retry, std::chrono::milliseconds(10));
  r.Int("wal.max_held", &c.wal_max_held, 1, 10000000);
  r.Int("wal.batch_size", &c.wal_batch_size, 1, 100000);
  // The table name goes into SQL text: only a plain identifier is accepted.
  if (!PlainIdentifier(c.table)) {
    r.Fail("table", "must be a plain lower-case identifier (a-z, 0-9, _)");
  }
  // The slot and publication names go into replication commands' text: plain identifiers too
  // (a slot name may hold only these characters anyway).
  if (!PlainIdentifier(c.wal_slot)) {
    r.Fail("wal.slot", "must be a plain lower-case identifier (a-z, 0-9, _)");
  }
  if (!PlainIdentifier(c.wal_publication)) {
    r.Fail("wal.publication", "must be a plain lower-case identifier (a-z, 0-9, _)");
  }
  Status s = r.Finish();
  if (!s.ok()) return s;
  return c;
}

}  // namespace treaty::outbox
