#include "participants/kit/participant_config.h"

#include <fstream>
#include <sstream>

namespace treaty::participant {

Result<ParticipantConfig> LoadParticipantConfig(const std::string& path,
                                                const std::string& env_prefix,
                                                const Environment& env) {
  auto text = ReadConfigText(path);
  if (!text.ok()) return text.status();
  ParticipantConfig c;
  ConfigReader r(path.empty() ? "(defaults)" : path, *text, env, env_prefix);
  r.Address("listen", &c.listen);
  r.Url("public_url", &c.public_url, {"http", "https"});
  while (!c.public_url.empty() && c.public_url.back() == '/') c.public_url.pop_back();
  r.Url("database.url", &c.database_url, {"postgresql", "postgres"});
  r.Int("database.pool_size", &c.pool_size, 1, 200);
  r.Url("coordinator.url", &c.coordinator_url, {"http", "https"});
  r.String("coordinator.token", &c.coordinator_token);
  r.DurationAtLeast("sweep.interval", &c.sweep_interval, std::chrono::milliseconds(10));
  r.DurationAtLeast("sweep.older_than", &c.sweep_older_than, std::chrono::milliseconds(0));
  r.OneOf("log.level", &c.log_level, {"debug", "info", "warn", "error"});
  r.NonEmptyString("events.topic", &c.events_topic);
  r.String("kafka.bootstrap_servers", &c.kafka_bootstrap_servers);
  r.String("kafka.group", &c.kafka_group);
  r.DurationAtLeast("retention.barrier_window", &c.retention_barrier_window,
                    std::chrono::minutes(1));
  r.DurationAtLeast("retention.inbox_window", &c.retention_inbox_window, std::chrono::minutes(1));
  r.Int("retention.batch", &c.retention_batch, 1, 100000);
  r.DurationAtLeast("retention.interval", &c.retention_interval, std::chrono::milliseconds(100));
  // A prepared 2PC branch older than sweep.older_than is asked about and finished; its mark must
  // outlive that by far (a late prepare must still find the abort's mark).
  if (c.retention_barrier_window <= c.sweep_older_than) {
    r.Fail("retention.barrier_window",
           "must be longer than sweep.older_than (" + FormatDuration(c.sweep_older_than) + ")");
  }
  Status s = r.Finish();
  if (!s.ok()) return s;
  return c;
}

}  // namespace treaty::participant
