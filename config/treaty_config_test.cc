#include "config/treaty_config.h"

#include <gtest/gtest.h>

#include <map>

namespace treaty {
namespace {

Environment FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string ErrorOf(std::string_view yaml, std::map<std::string, std::string> env = {}) {
  auto r = ParseTreatyConfig(yaml, "treaty.yaml", FakeEnv(std::move(env)));
  EXPECT_FALSE(r.ok()) << "expected an error for:\n" << yaml;
  return r.ok() ? "" : r.status().message();
}

TEST(TreatyConfig, EmptyFileGivesEveryDefault) {
  auto r = ParseTreatyConfig("", "treaty.yaml", FakeEnv({}));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->listen, (HostPort{"127.0.0.1", 8420}));
  EXPECT_EQ(r->store.url, "postgresql://treaty@127.0.0.1:5432/treaty");
  EXPECT_EQ(r->retry.initial, std::chrono::milliseconds(200));
  EXPECT_EQ(r->retry.max, std::chrono::seconds(30));
  EXPECT_EQ(r->timeouts.msg_check_back, std::chrono::seconds(5));
  EXPECT_EQ(r->log.level, "info");
}

TEST(TreatyConfig, ReadsTheDesignExample) {
  auto r = ParseTreatyConfig(R"(
listen: 127.0.0.1:0
store: { url: "postgresql://treaty:secret@db.internal:5433/treaty" }
kafka: { bootstrap_servers: "k1:9092,k2:9092" }
retry: { initial: 50ms, max: 1m30s, multiplier: 1.5, jitter: 0 }
timeouts: { branch_call: 1s, prepare: 20s, msg_check_back: 500ms }
sagas: [ sagas/*.yaml, extra/place-order.yaml ]
log: { level: debug }
)",
                             "treaty.yaml", FakeEnv({}));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->listen.port, 0);
  EXPECT_EQ(r->kafka.bootstrap_servers, "k1:9092,k2:9092");
  EXPECT_EQ(r->retry.initial, std::chrono::milliseconds(50));
  EXPECT_EQ(r->retry.max, std::chrono::seconds(90));
  EXPECT_DOUBLE_EQ(r->retry.multiplier, 1.5);
  EXPECT_EQ(r->timeouts.msg_check_back, std::chrono::milliseconds(500));
  EXPECT_EQ(r->sagas, (std::vector<std::string>{"sagas/*.yaml", "extra/place-order.yaml"}));
}

TEST(TreatyConfig, UnknownKeyNamesFileLineAndKey) {
  EXPECT_EQ(ErrorOf("listen: 127.0.0.1:1\nretyr: {}\n"),
            "treaty.yaml:2: retyr: unknown key (expected one of: auth, kafka, limits, listen, log, "
            "msg, node_id, participants, propagate_headers, retention, retry, sagas, scheduler, "
            "secret_headers, store, timeouts, tls, tracing, webhooks)");
  EXPECT_EQ(ErrorOf("retry:\n  initial: 1s\n  initail: 2s\n"),
            "treaty.yaml:3: retry.initail: unknown key (expected one of: initial, jitter, max, "
            "multiplier)");
}

TEST(TreatyConfig, WrongTypeNamesFileLineAndKey) {
  EXPECT_EQ(ErrorOf("retry: 5\n"), "treaty.yaml:1: retry: expected a mapping, found a value");
  EXPECT_EQ(ErrorOf("store:\n  url: [a, b]\n"),
            "treaty.yaml:2: store.url: expected a URL, found a list");
  EXPECT_EQ(ErrorOf("retry:\n  multiplier: fast\n"),
            "treaty.yaml:2: retry.multiplier: \"fast\" is not a number");
  EXPECT_EQ(ErrorOf("retry:\n  jitter: 3\n"),
            "treaty.yaml:2: retry.jitter: \"3\" is out of range (between 0 and 1)");
  EXPECT_EQ(ErrorOf("sagas: one.yaml\n"), "treaty.yaml:1: sagas: expected a list, found a value");
  EXPECT_EQ(ErrorOf("log: { level: loud }\n"),
            "treaty.yaml:1: log.level: \"loud\" is not one of: debug, info, warn, error");
}

TEST(TreatyConfig, BadDurationNamesFileLineAndKey) {
  EXPECT_EQ(
      ErrorOf("timeouts:\n  prepare: 10\n"),
      "treaty.yaml:2: timeouts.prepare: \"10\" is not a duration (write e.g. 200ms, 30s, 5m)");
  EXPECT_EQ(ErrorOf("timeouts:\n  branch_call: 3 seconds\n"),
            "treaty.yaml:2: timeouts.branch_call: \"3 seconds\" is not a duration (write e.g. "
            "200ms, 30s, 5m)");
  EXPECT_EQ(ErrorOf("retry: { initial: 2s, max: 1s }\n"),
            "treaty.yaml:1: retry.max: must not be shorter than retry.initial (2s)");
}

// libpq's multi-host form, for a failover pair (docs/deployment.md): kept as written.
TEST(TreatyConfig, StoreUrlMayListSeveralHosts) {
  const std::string url =
      "postgresql://treaty@db1:5432,db2:5433/treaty?target_session_attrs=read-write";
  auto r = ParseTreatyConfig("store: { url: \"" + url + "\" }\n", "treaty.yaml", FakeEnv({}));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->store.url, url);
  EXPECT_EQ(ErrorOf("store:\n  url: \"postgresql://db1:5432,:5433/treaty\"\n"),
            "treaty.yaml:2: store.url: URL has an empty host in its list");
  EXPECT_EQ(ErrorOf("store:\n  url: \"postgresql://db1:5432,db2:x/treaty\"\n"),
            "treaty.yaml:2: store.url: not a valid URL (bad or invalid port number: x)");
}

TEST(TreatyConfig, RetentionHasDefaultsAndIsValidated) {
  auto d = ParseTreatyConfig("", "treaty.yaml", FakeEnv({}));
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->retention.history, std::chrono::hours(24 * 7));
  EXPECT_EQ(d->retention.batch, 1000);
  EXPECT_EQ(d->retention.interval, std::chrono::minutes(1));
  EXPECT_EQ(d->retention.pause, std::chrono::milliseconds(100));
  auto r = ParseTreatyConfig("retention: { history: 2d, batch: 500, interval: 10s, pause: 0s }\n",
                             "treaty.yaml", FakeEnv({}));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->retention.history, std::chrono::hours(48));
  EXPECT_EQ(r->retention.batch, 500);
  EXPECT_EQ(r->retention.interval, std::chrono::seconds(10));
  EXPECT_EQ(r->retention.pause, std::chrono::milliseconds(0));
  EXPECT_EQ(ErrorOf("retention:\n  history: 30s\n"),
            "treaty.yaml:2: retention.history: \"30s\" is too short (at least 1m)");
  EXPECT_EQ(ErrorOf("retention:\n  batch: 0\n"),
            "treaty.yaml:2: retention.batch: \"0\" is out of range (1 to 100000)");
  EXPECT_EQ(ErrorOf("retention:\n  interval: 1ms\n"),
            "treaty.yaml:2: retention.interval: \"1ms\" is too short (at least 100ms)");
  EXPECT_EQ(ErrorOf("retention:\n  histroy: 7d\n"),
            "treaty.yaml:2: retention.histroy: unknown key (expected one of: batch, history, "
            "interval, pause)");
  EXPECT_EQ(ErrorOf("scheduler: { lease: 5m }\nretention:\n  history: 2m\n"),
            "treaty.yaml:3: retention.history: must be longer than scheduler.lease (5m)");
  EXPECT_EQ(ErrorOf("", {{"TREATY_RETENTION_HISTORY", "forever"}}),
            "environment variable TREATY_RETENTION_HISTORY: retention.history: \"forever\" is not "
            "a duration (write e.g. 200ms, 30s, 5m)");
}

TEST(TreatyConfig, BadUrlsAndAddressesNameFileLineAndKey) {
  EXPECT_EQ(ErrorOf("store:\n  url: mysql://db/treaty\n"),
            "treaty.yaml:2: store.url: URL must start with postgresql:// or postgres://");
  EXPECT_EQ(ErrorOf("store:\n  url: postgresql:///treaty\n"),
            "treaty.yaml:2: store.url: URL has no host");
  EXPECT_EQ(ErrorOf("listen: 8420\n"),
            "treaty.yaml:1: listen: \"8420\" is not an address (write host:port, e.g. "
            "127.0.0.1:8420)");
  EXPECT_EQ(ErrorOf("listen: 127.0.0.1:99999\n"),
            "treaty.yaml:1: listen: \"127.0.0.1:99999\" is not an address (write host:port, e.g. "
            "127.0.0.1:8420)");
}

TEST(TreatyConfig, SyntaxErrorNamesTheLine) {
  EXPECT_EQ(ErrorOf("listen: 127.0.0.1:1\nretry: { initial: 1s\n"),
            "treaty.yaml:3: not valid YAML: end of map flow not found");
}

TEST(TreatyConfig, ReportsEveryProblemAtOnce) {
  EXPECT_EQ(ErrorOf("listen: nowhere\nretry: { jitter: -1 }\nextra: 1\n"),
            "treaty.yaml:1: listen: \"nowhere\" is not an address (write host:port, e.g. "
            "127.0.0.1:8420)\n"
            "treaty.yaml:2: retry.jitter: \"-1\" is out of range (between 0 and 1)\n"
            "treaty.yaml:3: extra: unknown key (expected one of: auth, kafka, limits, listen, log, "
            "msg, node_id, participants, propagate_headers, retention, retry, sagas, scheduler, "
            "secret_headers, store, timeouts, tls, tracing, webhooks)");
}

TEST(TreatyConfig, EnvironmentOverridesTheFile) {
  auto r =
      ParseTreatyConfig("listen: 127.0.0.1:1\nretry: { initial: 1s, max: 5s }\n", "treaty.yaml",
                        FakeEnv({{"TREATY_LISTEN", "0.0.0.0:9000"},
                                 {"TREATY_AUTH_CLIENT_TOKENS", "client-token-0123456789"},
                                 {"TREATY_RETRY_INITIAL", "300ms"},
                                 {"TREATY_STORE_URL", "postgresql://u@h:1/d"},
                                 {"TREATY_SAGAS", "a.yaml,b.yaml"}}));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->listen, (HostPort{"0.0.0.0", 9000}));
  EXPECT_EQ(r->retry.initial, std::chrono::milliseconds(300));
  EXPECT_EQ(r->retry.max, std::chrono::seconds(5));
  EXPECT_EQ(r->store.url, "postgresql://u@h:1/d");
  EXPECT_EQ(r->sagas, (std::vector<std::string>{"a.yaml", "b.yaml"}));
}

TEST(TreatyConfig, BeyondLoopbackNeedsTokensOrAnExplicitNone) {
  EXPECT_EQ(ErrorOf("listen: 0.0.0.0:8420\n"),
            "treaty.yaml:1: listen: 0.0.0.0 is reachable from other machines: configure auth "
            "tokens, or set auth.none: true to run without authentication on purpose");
  EXPECT_TRUE(
      ParseTreatyConfig("listen: 0.0.0.0:8420\nauth: { none: true }\n", "t", FakeEnv({})).ok());
  EXPECT_TRUE(
      ParseTreatyConfig("listen: 0.0.0.0:8420\nauth: { admin_tokens: [admin-token-0123456789] }\n",
                        "t", FakeEnv({}))
          .ok());
  EXPECT_TRUE(ParseTreatyConfig("listen: 127.0.0.1:8420\n", "t", FakeEnv({})).ok())
      << "loopback needs no tokens: the sidecar form";
  EXPECT_EQ(ErrorOf("auth:\n  client_tokens: [short]\n"),
            "treaty.yaml:2: auth.client_tokens: a token is shorter than 16 characters");
  EXPECT_EQ(ErrorOf("auth:\n  none: true\n  admin_tokens: [admin-token-0123456789]\n"),
            "treaty.yaml:2: auth.none: is true, but tokens are configured too: choose one");
}

TEST(TreatyConfig, ShardsAreTheStoreSplitByGidAndExclusiveWithUrl) {
  auto one = ParseTreatyConfig("", "treaty.yaml", FakeEnv({}));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->store.shards, std::vector<std::string>{one->store.url}) << "url is one shard";

  auto two = ParseTreatyConfig(
      "store:\n  shards:\n    - postgresql://a:5432/treaty\n    - postgresql://b:5432/treaty\n",
      "treaty.yaml", FakeEnv({}));
  ASSERT_TRUE(two.ok()) << two.status().message();
  EXPECT_EQ(two->store.shards,
            (std::vector<std::string>{"postgresql://a:5432/treaty", "postgresql://b:5432/treaty"}));
  EXPECT_EQ(two->store.url, "postgresql://a:5432/treaty");

  auto from_env = ParseTreatyConfig(
      "", "treaty.yaml",
      FakeEnv({{"TREATY_STORE_SHARDS", "postgresql://a/t,postgresql://b/t,postgresql://c/t"}}));
  ASSERT_TRUE(from_env.ok()) << from_env.status().message();
  EXPECT_EQ(from_env->store.shards.size(), 3u);

  EXPECT_EQ(ErrorOf("store:\n  url: postgresql://a/t\n  shards: [postgresql://b/t]\n"),
            "treaty.yaml:3: store.shards: and store.url are exclusive: give one database as "
            "store.url, or every shard here");
  EXPECT_EQ(ErrorOf("store:\n  shards:\n    - postgresql://a/t\n    - mysql://b/t\n"),
            "treaty.yaml:4: store.shards: item 1: URL must start with postgresql:// or "
            "postgres://");
  EXPECT_EQ(ErrorOf("store:\n  shards: []\n"),
            "treaty.yaml:2: store.shards: is empty: list at least one database URL");
  EXPECT_EQ(ErrorOf("store:\n  shards: postgresql://a/t\n"),
            "treaty.yaml:2: store.shards: expected a list, found a value");
  EXPECT_EQ(ErrorOf("store:\n  shards: [postgresql://a/t, postgresql://a/t]\n"),
            "treaty.yaml:2: store.shards: items 0 and 1 are the same database");
  EXPECT_EQ(
      ErrorOf("store: { url: postgresql://a/t }\n", {{"TREATY_STORE_SHARDS", "postgresql://b/t"}}),
      "environment variable TREATY_STORE_SHARDS: store.shards: and store.url are exclusive: "
      "give one database as store.url, or every shard here");
}

TEST(TreatyConfig, TokensAreNeverDescribed) {
  auto c = ParseTreatyConfig(
      "auth: { client_tokens: [client-secret-0123456789], admin_tokens: [admin-secret-0123456789] "
      "}\n"
      "store: { url: \"postgresql://treaty:db-password-42@db:5432/treaty\" }\n",
      "t", FakeEnv({}));
  ASSERT_TRUE(c.ok()) << c.status().message();
  for (const auto& [key, value] : DescribeConfig(*c)) {
    EXPECT_EQ(value.find("secret"), std::string::npos) << key << "=" << value;
    EXPECT_EQ(value.find("db-password-42"), std::string::npos) << key << "=" << value;
  }
}

TEST(TreatyConfig, BadEnvironmentValueNamesTheVariable) {
  EXPECT_EQ(ErrorOf("", {{"TREATY_RETRY_INITIAL", "soon"}}),
            "environment variable TREATY_RETRY_INITIAL: retry.initial: \"soon\" is not a duration "
            "(write e.g. 200ms, 30s, 5m)");
}

TEST(TreatyConfig, MissingFileIsNamed) {
  auto r = LoadTreatyConfig("/nonexistent/treaty.yaml", FakeEnv({}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "/nonexistent/treaty.yaml: cannot read the config file");
}

TEST(MaskUrlPassword, HidesOnlyThePassword) {
  EXPECT_EQ(MaskUrlPassword("postgresql://treaty:s3cret@db:5432/treaty"),
            "postgresql://treaty:****@db:5432/treaty");
  EXPECT_EQ(MaskUrlPassword("postgresql://treaty@db:5432/treaty"),
            "postgresql://treaty@db:5432/treaty");
  EXPECT_EQ(MaskUrlPassword("postgresql://db:5432/x@y"), "postgresql://db:5432/x@y");
}

}  // namespace
}  // namespace treaty

namespace treaty {
namespace {

TEST(TreatyConfigPropagation, ReadsHeaderNamesInLowerCase) {
  auto r = ParseTreatyConfig(
      "propagate_headers: [X-Tenant-Id, authorization]\nsecret_headers: [X-Api-Key]\n",
      "treaty.yaml", [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->propagation.headers, (std::vector<std::string>{"x-tenant-id", "authorization"}));
  EXPECT_EQ(r->propagation.secret, (std::vector<std::string>{"x-api-key"}));
}

TEST(TreatyConfigPropagation, RefusesHeadersTreatySetsOrThatAreNoNames) {
  auto error = [](const std::string& yaml) {
    auto r = ParseTreatyConfig(
        yaml, "treaty.yaml",
        [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(error("propagate_headers: [traceparent]\n").find("treaty.yaml"), std::string::npos);
  EXPECT_NE(error("propagate_headers: [traceparent]\n").find("propagate_headers"),
            std::string::npos);
  EXPECT_NE(error("propagate_headers: [Treaty-Gid]\n").find("Treaty protocol header"),
            std::string::npos);
  EXPECT_NE(error("propagate_headers: [content-length]\n").find("set by Treaty"),
            std::string::npos);
  EXPECT_NE(error("propagate_headers: [\"x tenant\"]\n").find("not a header name"),
            std::string::npos);
  EXPECT_NE(error("secret_headers: [\"\"]\n").find("secret_headers"), std::string::npos);
  // treatyd's own tokens travel in Authorization: with auth configured it is not passed on.
  EXPECT_NE(error("auth: { client_tokens: [aaaaaaaaaaaaaaaaaaaa] }\n"
                  "propagate_headers: [authorization]\n")
                .find("treatyd's own API tokens"),
            std::string::npos);
}

}  // namespace
}  // namespace treaty
