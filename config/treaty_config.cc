#include "config/treaty_config.h"

#include <algorithm>
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

// Why `name` (lower case) cannot be a propagated header; "" when it can. Treaty's own headers
// and those HTTP or the trace context define are set per call, not copied.
std::string PropagatedHeaderProblem(const std::string& name) {
  if (name.empty()) return "is not a header name";
  for (char ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) &&
        std::string_view("!#$%&'*+-.^_`|~").find(ch) == std::string_view::npos) {
      return "is not a header name (letters, digits and !#$%&'*+-.^_`|~ only)";
    }
  }
  for (const char* own :
       {"host", "content-type", "content-length", "transfer-encoding", "connection", "keep-alive",
        "upgrade", "te", "trailer", "expect", "traceparent", "tracestate"}) {
    if (name == own) return "is set by Treaty on each call and cannot be propagated";
  }
  if (name.rfind("treaty-", 0) == 0) return "is a Treaty protocol header and cannot be propagated";
  return "";
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
  r.Int("scheduler.max_queued", &c.scheduler.max_queued, 1, 1000000);
  r.StringList("sagas", &c.sagas);
  r.Bool("auth.none", &c.auth.none);
  r.StringList("auth.client_tokens", &c.auth.client_tokens);
  r.StringList("auth.admin_tokens", &c.auth.admin_tokens);
  r.StringList("auth.client_token_files", &c.auth.client_token_files);
  r.StringList("auth.admin_token_files", &c.auth.admin_token_files);
  r.StringList("participants.allow", &c.participants.allow);
  r.StringList("propagate_headers", &c.propagation.headers);
  r.StringList("secret_headers", &c.propagation.secret);
  r.String("webhooks.secret", &c.webhooks.secret);
  r.DurationAtLeast("webhooks.timeout", &c.webhooks.timeout, std::chrono::milliseconds(10));
  r.DurationAtLeast("webhooks.poll_interval", &c.webhooks.poll_interval,
                    std::chrono::milliseconds(10));
  r.DurationAtLeast("webhooks.max_backoff", &c.webhooks.max_backoff, std::chrono::milliseconds(10));
  r.Url("tracing.otlp_endpoint", &c.tracing.otlp_endpoint, {"http", "https"});
  r.NonEmptyString("tracing.service_name", &c.tracing.service_name);
  r.Int("tracing.max_queue", &c.tracing.max_queue, 1, 1000000);
  r.Int("tracing.max_batch", &c.tracing.max_batch, 1, 100000);
  r.DurationAtLeast("tracing.flush_interval", &c.tracing.flush_interval,
                    std::chrono::milliseconds(10));
  r.DurationAtLeast("tracing.timeout", &c.tracing.timeout, std::chrono::milliseconds(10));
  r.Int("limits.max_body_bytes", &c.limits.max_body_bytes, 1024, 1LL << 30);
  r.Int("limits.max_branches", &c.limits.max_branches, 1, 10000);
  r.Int("limits.max_payload_bytes", &c.limits.max_payload_bytes, 16, 1LL << 30);
  r.Int("limits.max_connections", &c.limits.max_connections, 1, 100000);
  r.Int("limits.threads", &c.limits.threads, 1, 4096);
  r.DurationAtLeast("limits.read_timeout", &c.limits.read_timeout, std::chrono::milliseconds(100));
  r.Double("limits.rate_per_second", &c.limits.rate_per_second, 0, 1e9);
  r.Int("limits.rate_burst", &c.limits.rate_burst, 1, 1000000000);
  r.String("tls.cert_file", &c.tls.cert_file);
  r.String("tls.key_file", &c.tls.key_file);
  r.String("tls.client_ca_file", &c.tls.client_ca_file);
  r.String("tls.ca_file", &c.tls.ca_file);
  r.String("tls.client_cert_file", &c.tls.client_cert_file);
  r.String("tls.client_key_file", &c.tls.client_key_file);
  // At least a minute: a shorter history would delete what a client polling for the outcome
  // (or a participant's presumed-abort sweep asking about a gid) is about to read.
  r.DurationAtLeast("retention.history", &c.retention.history, std::chrono::minutes(1));
  r.Int("retention.batch", &c.retention.batch, 1, 100000);
  r.DurationAtLeast("retention.interval", &c.retention.interval, std::chrono::milliseconds(100));
  r.DurationAtLeast("retention.pause", &c.retention.pause, std::chrono::milliseconds(0));
  r.OneOf("log.level", &c.log.level, {"debug", "info", "warn", "error"});
  if (!c.node_id.empty() && !ValidNodeId(c.node_id)) {
    r.Fail("node_id", "must be 1 to 100 characters of A-Z a-z 0-9 . _ : -");
  }
  if (c.scheduler.lease <= c.timeouts.branch_call) {
    r.Fail("scheduler.lease", "must be longer than timeouts.branch_call (" +
                                  FormatDuration(c.timeouts.branch_call) + ")");
  }
  if (c.retention.history <= c.scheduler.lease) {
    // A transaction's row is what fences its last writes and answers its clients' polls; it
    // must outlive any drive still finishing it.
    r.Fail("retention.history",
           "must be longer than scheduler.lease (" + FormatDuration(c.scheduler.lease) + ")");
  }
  if (c.retry.max < c.retry.initial) {
    r.Fail("retry.max",
           "must not be shorter than retry.initial (" + FormatDuration(c.retry.initial) + ")");
  }
  const bool any_token = !c.auth.client_tokens.empty() || !c.auth.admin_tokens.empty() ||
                         !c.auth.client_token_files.empty() || !c.auth.admin_token_files.empty();
  if (c.auth.none && any_token) {
    r.Fail("auth.none", "is true, but tokens are configured too: choose one");
  } else if (!c.auth.none && !any_token && !IsLoopbackHost(c.listen.host)) {
    r.Fail("listen", c.listen.host +
                         " is reachable from other machines: configure auth tokens, or set "
                         "auth.none: true to run without authentication on purpose");
  }
  for (const auto& [key, tokens] : {std::pair{"auth.client_tokens", &c.auth.client_tokens},
                                    std::pair{"auth.admin_tokens", &c.auth.admin_tokens}}) {
    for (const std::string& t : *tokens) {
      if (t.size() < 16) r.Fail(key, "a token is shorter than 16 characters");
    }
  }
  if (c.participants.allow.empty()) {
    r.Fail("participants.allow", "is empty: treatyd could call no participant");
  }
  for (const auto& [key, names] : {std::pair{"propagate_headers", &c.propagation.headers},
                                   std::pair{"secret_headers", &c.propagation.secret}}) {
    for (std::string& name : *names) {
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (std::string problem = PropagatedHeaderProblem(name); !problem.empty()) {
        r.Fail(key, "\"" + name + "\" " + problem);
      }
    }
  }
  // treatyd's own tokens come in Authorization: passing it on would hand them to participants.
  if (any_token && std::find(c.propagation.headers.begin(), c.propagation.headers.end(),
                             "authorization") != c.propagation.headers.end()) {
    r.Fail("propagate_headers",
           "names authorization, which carries treatyd's own API tokens (auth is configured): "
           "the participants would receive them");
  }
  if (c.tls.cert_file.empty() != c.tls.key_file.empty()) {
    r.Fail(c.tls.cert_file.empty() ? "tls.cert_file" : "tls.key_file",
           "tls.cert_file and tls.key_file go together");
  }
  if (!c.tls.client_ca_file.empty() && c.tls.cert_file.empty()) {
    r.Fail("tls.client_ca_file", "needs tls.cert_file and tls.key_file (an HTTPS listener)");
  }
  if (c.tls.client_cert_file.empty() != c.tls.client_key_file.empty()) {
    r.Fail(c.tls.client_cert_file.empty() ? "tls.client_cert_file" : "tls.client_key_file",
           "tls.client_cert_file and tls.client_key_file go together");
  }
  Status s = r.Finish();
  if (!s.ok()) return s;
  return c;
}

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

Result<std::vector<RoleToken>> LoadTokens(const AuthOptions& auth) {
  std::vector<RoleToken> out;
  for (size_t i = 0; i < auth.client_tokens.size(); ++i) {
    out.push_back({auth.client_tokens[i], false, "client_tokens[" + std::to_string(i) + "]"});
  }
  for (size_t i = 0; i < auth.admin_tokens.size(); ++i) {
    out.push_back({auth.admin_tokens[i], true, "admin_tokens[" + std::to_string(i) + "]"});
  }
  for (bool admin : {false, true}) {
    for (const std::string& path : admin ? auth.admin_token_files : auth.client_token_files) {
      auto text = ReadConfigText(path);
      if (!text.ok()) return text.status();
      std::string token = *text;
      while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
        token.pop_back();
      size_t start = token.find_first_not_of(" \t\r\n");
      token = start == std::string::npos ? "" : token.substr(start);
      if (token.size() < 16) {
        return Status::InvalidArgument(path + ": the token is shorter than 16 characters");
      }
      out.push_back({token, admin, path.substr(path.find_last_of('/') + 1)});
    }
  }
  return out;
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

namespace {
std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}
}  // namespace

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
      {"scheduler.max_queued", std::to_string(c.scheduler.max_queued)},
      {"auth",
       c.auth.none ? "none"
       : (c.auth.client_tokens.empty() && c.auth.admin_tokens.empty() &&
          c.auth.client_token_files.empty() && c.auth.admin_token_files.empty())
           ? "open (loopback only)"
           : std::to_string(c.auth.client_tokens.size() + c.auth.client_token_files.size()) +
                 " client and " +
                 std::to_string(c.auth.admin_tokens.size() + c.auth.admin_token_files.size()) +
                 " admin tokens (not shown)"},
      {"participants.allow", Join(c.participants.allow)},
      {"propagate_headers", Join(c.propagation.headers)},
      {"secret_headers", Join(c.propagation.secret)},
      {"webhooks.secret", c.webhooks.secret.empty()
                              ? "(none: webhooks are signed with an empty key)"
                              : "(set, not shown)"},
      {"tracing.otlp_endpoint",
       c.tracing.otlp_endpoint.empty() ? "(off)" : c.tracing.otlp_endpoint},
      {"limits.max_body_bytes", std::to_string(c.limits.max_body_bytes)},
      {"limits.max_branches", std::to_string(c.limits.max_branches)},
      {"limits.max_payload_bytes", std::to_string(c.limits.max_payload_bytes)},
      {"limits.max_connections", std::to_string(c.limits.max_connections)},
      {"limits.read_timeout", FormatDuration(c.limits.read_timeout)},
      {"limits.rate_per_second", std::to_string(c.limits.rate_per_second)},
      {"tls", c.tls.cert_file.empty() ? "off" : "on (" + c.tls.cert_file + ")"},
      {"retention.history", FormatDuration(c.retention.history)},
      {"retention.batch", std::to_string(c.retention.batch)},
      {"retention.interval", FormatDuration(c.retention.interval)},
      {"retention.pause", FormatDuration(c.retention.pause)},
      {"log.level", c.log.level},
  };
}

}  // namespace treaty
