#include "config/treaty_config.h"

#include <cctype>
#include <fstream>
#include <sstream>

namespace treaty {
namespace {

bool ValidNodeId(const std::string& id) {
  if (id.empty() || id.size() > 100) return false;
  for (char ch : id) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != ':' &&
        ch != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<TreatyConfig> ParseTreatyConfig(std::string_view yaml_text, const std::string& file,
                                       const Environment& env) {
  TreatyConfig c;
  c.source = file;
  ConfigReader r(file, yaml_text, env);
  r.Address("listen", &c.listen);
  r.String("node_id", &c.node_id);
  r.Url("store.url", &c.store.url, {"postgresql", "postgres"});
  r.DurationAtLeast("store.connect_timeout", &c.store.connect_timeout, std::chrono::seconds(1));
  r.Int("store.pool_size", &c.store.pool_size, 1, 1000);
  r.Bool("store.group_commit", &c.store.group_commit);
  r.NonEmptyString("kafka.bootstrap_servers", &c.kafka.bootstrap_servers);
  r.DurationAtLeast("kafka.delivery_timeout", &c.kafka.delivery_timeout, std::chrono::seconds(1));
  r.Int("msg.max_checks", &c.msg.max_checks, 1, 1000000);
  r.DurationAtLeast("retry.initial", &c.retry.initial, std::chrono::milliseconds(1));
  r.DurationAtLeast("retry.max", &c.retry.max, std::chrono::milliseconds(1));
  r.Double("retry.multiplier", &c.retry.multiplier, 1.0, 100.0);
  r.Double("retry.jitter", &c.retry.jitter, 0.0, 1.0);
  r.DurationAtLeast("timeouts.branch_call", &c.timeouts.branch_call, std::chrono::milliseconds(1));
  r.DurationAtLeast("timeouts.prepare", &c.timeouts.prepare, std::chrono::milliseconds(1));
  r.DurationAtLeast("timeouts.msg_check_back", &c.timeouts.msg_check_back,
                    std::chrono::milliseconds(1));
  r.Int("scheduler.workers", &c.scheduler.workers, 1, 1024);
  r.DurationAtLeast("scheduler.poll_interval", &c.scheduler.poll_interval,
                    std::chrono::milliseconds(1));
  r.DurationAtLeast("scheduler.lease", &c.scheduler.lease, std::chrono::seconds(1));
  r.StringList("sagas", &c.sagas);
  r.OneOf("log.level", &c.log.level, {"debug", "info", "warn", "error"});
  if (!c.node_id.empty() && !ValidNodeId(c.node_id)) {
    r.Fail("node_id", "must be 1 to 100 characters of A-Z a-z 0-9 . _ : -");
  }
  if (c.scheduler.lease <= c.timeouts.branch_call) {
    r.Fail("scheduler.lease", "must be longer than timeouts.branch_call (" +
                                  FormatDuration(c.timeouts.branch_call) + ")");
  }
  if (c.retry.max < c.retry.initial) {
    r.Fail("retry.max", "must not be shorter than retry.initial (" +
                            FormatDuration(c.retry.initial) + ")");
  }
  Status s = r.Finish();
  if (!s.ok()) return s;
  return c;
}

Result<TreatyConfig> LoadTreatyConfig(const std::string& path, const Environment& env) {
  auto text = ReadConfigText(path);
  if (!text.ok()) return text.status();
  return ParseTreatyConfig(*text, path, env);
}

std::string MaskUrlPassword(const std::string& url) {
  // scheme://user:password@host...: the password runs from the first ':' after "//" to the '@'.
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return url;
  size_t auth_start = scheme_end + 3;
  size_t at = url.find('@', auth_start);
  size_t slash = url.find('/', auth_start);
  if (at == std::string::npos || (slash != std::string::npos && slash < at)) return url;
  size_t colon = url.find(':', auth_start);
  if (colon == std::string::npos || colon > at) return url;
  return url.substr(0, colon + 1) + "****" + url.substr(at);
}

std::vector<std::pair<std::string, std::string>> DescribeConfig(const TreatyConfig& c) {
  return {
      {"listen", c.listen.ToString()},
      {"node_id", c.node_id},
      {"store.url", MaskUrlPassword(c.store.url)},
      {"store.connect_timeout", FormatDuration(c.store.connect_timeout)},
      {"store.pool_size", std::to_string(c.store.pool_size)},
      {"store.group_commit", c.store.group_commit ? "true" : "false"},
      {"kafka.bootstrap_servers", c.kafka.bootstrap_servers},
      {"kafka.delivery_timeout", FormatDuration(c.kafka.delivery_timeout)},
      {"msg.max_checks", std::to_string(c.msg.max_checks)},
      {"retry.initial", FormatDuration(c.retry.initial)},
      {"retry.max", FormatDuration(c.retry.max)},
      {"retry.multiplier", std::to_string(c.retry.multiplier)},
      {"retry.jitter", std::to_string(c.retry.jitter)},
      {"timeouts.branch_call", FormatDuration(c.timeouts.branch_call)},
      {"timeouts.prepare", FormatDuration(c.timeouts.prepare)},
      {"timeouts.msg_check_back", FormatDuration(c.timeouts.msg_check_back)},
      {"scheduler.workers", std::to_string(c.scheduler.workers)},
      {"scheduler.poll_interval", FormatDuration(c.scheduler.poll_interval)},
      {"scheduler.lease", FormatDuration(c.scheduler.lease)},
      {"log.level", c.log.level},
  };
}

}  // namespace treaty
