#include "outbox/relay_config.h"

#include <cctype>
#include <fstream>
#include <sstream>

namespace treaty::outbox {

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
  // The table name goes into SQL text: only a plain identifier is accepted.
  bool plain = !c.table.empty() &&
               (std::islower(static_cast<unsigned char>(c.table[0])) || c.table[0] == '_');
  for (char ch : c.table) {
    plain = plain && (std::islower(static_cast<unsigned char>(ch)) ||
                      std::isdigit(static_cast<unsigned char>(ch)) || ch == '_');
  }
  if (!plain) r.Fail("table", "must be a plain lower-case identifier (a-z, 0-9, _)");
  Status s = r.Finish();
  if (!s.ok()) return s;
  return c;
}

}  // namespace treaty::outbox
