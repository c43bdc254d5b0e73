#pragma once

// treatyd's configuration: treaty.yaml parsed into validated, typed options. Every key has the
// default written here; TREATY_* environment variables override the file (see ConfigReader).
// docs/configuration.md lists every key.

#include <string>
#include <vector>

#include "common/duration.h"
#include "common/status.h"
#include "config/config_reader.h"

namespace treaty {

struct StoreOptions {
  // PostgreSQL connection URL (postgresql://user:password@host:port/db).
  std::string url = "postgresql://treaty@127.0.0.1:5432/treaty";
  // How long one connection attempt may take before it counts as failed.
  Duration connect_timeout = std::chrono::seconds(5);
  // Connections kept open to the store.
  int64_t pool_size = 16;
  // Concurrent state changes share one database transaction (one commit for many).
  bool group_commit = false;
};

struct KafkaOptions {
  // Comma-separated host:port list, handed to librdkafka as bootstrap.servers.
  std::string bootstrap_servers = "127.0.0.1:9092";
  // A message not acknowledged by then counts as failed and is sent again later.
  Duration delivery_timeout = std::chrono::seconds(10);
};

struct MsgOptions {
  // Unanswered check-backs after which a transaction carries an attention note.
  int64_t max_checks = 10;
};

struct RetryOptions {
  Duration initial = std::chrono::milliseconds(200);  // first backoff
  Duration max = std::chrono::seconds(30);            // backoff cap
  double multiplier = 2.0;                            // growth per attempt, >= 1
  double jitter = 0.2;                                // +/- fraction of each backoff, in [0, 1]
};

struct TimeoutOptions {
  Duration branch_call = std::chrono::seconds(3);  // one HTTP call to a participant
  Duration prepare = std::chrono::seconds(10);  // default deadline of a transaction's first phase
  Duration msg_check_back =
      std::chrono::seconds(5);  // a half message waits this long before check-back
};

struct SchedulerOptions {
  int64_t workers = 16;  // transactions driven at once by this treatyd
  Duration poll_interval = std::chrono::milliseconds(100);  // how often due work is claimed
  // How long a claim on a transaction keeps other treatyd away; must exceed one step (a round
  // of branch calls plus its store writes).
  Duration lease = std::chrono::seconds(30);
  // Transactions waiting for a worker, at most; beyond it new ones are refused with 503.
  int64_t max_queued = 2000;
};

// Who may call the API. No tokens: anyone who can connect, which is refused (a config error)
// when `listen` is beyond loopback unless `none` says so explicitly.
struct AuthOptions {
  bool none = false;                            // no authentication, even beyond loopback
  std::vector<std::string> client_tokens;       // start, submit, abort, read
  std::vector<std::string> admin_tokens;        // also retry, saga reload (the console's actions)
  std::vector<std::string> client_token_files;  // one token per file (Kubernetes secrets)
  std::vector<std::string> admin_token_files;
};

// Which participant URLs treatyd will call: "loopback", a host ("inventory.internal"), a host
// suffix ("*.svc.cluster.local"), or a URL prefix ("https://pay.example.com/treaty/").
struct ParticipantOptions {
  std::vector<std::string> allow = {"loopback"};
};

// Headers of a starting request passed on to that transaction's participants
// (docs/configuration.md).
struct PropagationOptions {
  std::vector<std::string> headers;  // propagate_headers: lower-case names
  // secret_headers: also never shown (authorization, proxy-authorization and cookie always are).
  std::vector<std::string> secret;
};

// Span export over OTLP/HTTP (JSON): off unless otlp_endpoint is set.
struct TracingOptions {
  std::string otlp_endpoint;  // e.g. http://127.0.0.1:4318/v1/traces
  std::string service_name = "treatyd";
  int64_t max_queue = 2048;  // spans waiting for export; beyond, new ones are dropped
  int64_t max_batch = 256;   // spans per export call
  Duration flush_interval = std::chrono::seconds(1);
  Duration timeout = std::chrono::seconds(2);  // one export call
};

// Completion webhooks (a transaction's "notify"): how treatyd delivers them.
struct WebhookOptions {
  std::string secret;                          // the HMAC-SHA256 key of Treaty-Signature
  Duration timeout = std::chrono::seconds(5);  // one delivery call
  Duration poll_interval = std::chrono::milliseconds(200);  // how often due deliveries are read
  Duration max_backoff = std::chrono::minutes(5);           // between attempts, at most
};

struct LimitOptions {
  int64_t max_body_bytes = 1 << 20;                  // request body (413 beyond)
  int64_t max_branches = 64;                         // per transaction
  int64_t max_payload_bytes = 64 << 10;              // one branch's payload or one message's value
  int64_t max_connections = 1024;                    // open client connections (beyond: refused)
  int64_t threads = 256;                             // connections served at once (one thread each)
  Duration read_timeout = std::chrono::seconds(10);  // a client silent this long is closed
  // Requests per second per token (per client address without tokens), with a burst; 0: no limit.
  double rate_per_second = 2000;
  int64_t rate_burst = 4000;
};

// TLS: an HTTPS listener when cert_file is set; participants called over https are verified
// against ca_file (or the system's CAs), presenting client_cert_file when set (mTLS).
struct TlsOptions {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // API clients must present a certificate signed by these CAs
  std::string ca_file;
  std::string client_cert_file;
  std::string client_key_file;
};

// How long finished transactions are kept, and how they are purged (docs/recovery.md,
// "Retention"). A committed or aborted transaction whose last change (by the store's clock) is
// older than `history` is deleted with its decision log, `batch` rows per statement, a round of
// such statements every `interval`, `pause` between two statements of a round (a backlog is
// purged at a bounded pace: docs/performance.md, finding 36). Unfinished transactions are never
// purged, however old.
struct RetentionOptions {
  Duration history = std::chrono::hours(24 * 7);
  int64_t batch = 1000;
  Duration interval = std::chrono::minutes(1);
  Duration pause = std::chrono::milliseconds(100);
};

struct LogOptions {
  std::string level = "info";  // debug, info, warn, error
};

struct TreatyConfig {
  HostPort listen{"127.0.0.1", 8420};
  // This treatyd's name in leases. Unique among the treatyd sharing a store; stable across
  // restarts, so that a restarted treatyd takes its predecessor's work back at once. Empty: the
  // host name.
  std::string node_id;
  StoreOptions store;
  KafkaOptions kafka;
  RetryOptions retry;
  TimeoutOptions timeouts;
  SchedulerOptions scheduler;
  MsgOptions msg;
  std::vector<std::string> sagas;  // saga definition files (globs allowed)
  AuthOptions auth;
  ParticipantOptions participants;
  PropagationOptions propagation;
  TracingOptions tracing;
  WebhookOptions webhooks;
  LimitOptions limits;
  TlsOptions tls;
  RetentionOptions retention;
  LogOptions log;
  std::string source;  // the file it was read from, for messages
};

// Parses YAML text; `file` names it in errors. On error, the message has one line per problem,
// each naming the file, line and key (or the environment variable).
Result<TreatyConfig> ParseTreatyConfig(std::string_view yaml_text, const std::string& file,
                                       const Environment& env);

// Reads and parses the file at `path`. A missing or unreadable file is an error naming it.
Result<TreatyConfig> LoadTreatyConfig(const std::string& path, const Environment& env);

// The tokens of `auth` with their roles: the literal ones and those read from the token files
// (trimmed). An error names the file that cannot be read or a token shorter than 16 characters.
struct RoleToken {
  std::string token;
  bool admin = false;
  // Who it is, for the decision log of an operator's force-finish: a token file's name
  // ("/run/secrets/ops-alice" is "ops-alice"), else its place ("admin_tokens[0]").
  std::string name;
};
Result<std::vector<RoleToken>> LoadTokens(const AuthOptions& auth);

// True when `host` can only be reached from this machine (localhost, 127.0.0.0/8, ::1).
bool IsLoopbackHost(const std::string& host);

// `url` with any password replaced by "****", for logs.
std::string MaskUrlPassword(const std::string& url);

// The effective configuration as "key=value" pairs (secrets masked), for the start-up log.
std::vector<std::pair<std::string, std::string>> DescribeConfig(const TreatyConfig& config);

}  // namespace treaty
