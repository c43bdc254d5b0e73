// treatyd's skeleton as a real process against a real PostgreSQL: config validation, readiness
// that follows the database, idempotent migrations, clean shutdown.

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>

#include <fstream>

#include "coordinator/store/migrations.h"
#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/service.h"
#include "integration-tests/harness/test_support.h"

namespace treaty::harness {
namespace {

int StatusOf(const std::string& url) {
  auto r = HttpCall("GET", url, "", std::chrono::seconds(10));
  return r.ok() ? r->status : -1;
}

std::string TreatydConfig(const PgCluster& pg, const std::string& extra = "") {
  return "listen: 127.0.0.1:0\n"
         "store:\n  url: " +
         pg.Url("treaty") +
         "\n  connect_timeout: 2s\n"
         "retry: { initial: 50ms, max: 500ms }\n" +
         extra;
}

class TreatydTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pg = PgCluster::Start();
    ASSERT_TRUE(pg.ok()) << pg.status().message();
    pg_ = std::move(*pg);
    ASSERT_OK(pg_->CreateDatabase("treaty"));
  }

  std::unique_ptr<Service> StartTreatyd(const std::string& config,
                                        std::vector<std::pair<std::string, std::string>> env = {}) {
    auto s = Service::Start(ServiceSpec{.name = "treatyd",
                                        .binary = kTreatydPath,
                                        .config_yaml = config,
                                        .extra_args = {},
                                        .env = std::move(env)});
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(*s) : nullptr;
  }

  bool BecomesReady(Service& t) {
    return WaitUntil([&] { return StatusOf(t.base_url() + "/readyz") == 200; },
                     std::chrono::seconds(30));
  }

  std::unique_ptr<PgCluster> pg_;
};

TEST_F(TreatydTest, BecomesReadyAgainstARealDatabase) {
  auto t = StartTreatyd(TreatydConfig(*pg_));
  ASSERT_TRUE(t);
  EXPECT_EQ(StatusOf(t->base_url() + "/healthz"), 200);
  ASSERT_TRUE(BecomesReady(*t)) << "never ready";
  auto tables = pg_->QueryValue(
      "treaty",
      "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables "
      "WHERE table_schema = 'treaty'");
  ASSERT_TRUE(tables.ok()) << tables.status().message();
  EXPECT_EQ(*tables,
            "decision_log,saga_versions,schema_migrations,transactions,webhook_deliveries");

  auto missing = HttpCall("GET", t->base_url() + "/nowhere");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->content_type, "application/json");
}

TEST_F(TreatydTest, ReadinessFollowsTheDatabase) {
  auto t = StartTreatyd(TreatydConfig(*pg_));
  ASSERT_TRUE(t);
  ASSERT_TRUE(BecomesReady(*t));

  ASSERT_OK(pg_->Stop());
  EXPECT_TRUE(WaitUntil([&] { return StatusOf(t->base_url() + "/readyz") == 503; },
                        std::chrono::seconds(30)))
      << "still ready with the database stopped";
  auto body = HttpCall("GET", t->base_url() + "/readyz");
  ASSERT_TRUE(body.ok());
  EXPECT_NE(body->body.find("\"status\":\"unavailable\""), std::string::npos) << body->body;
  EXPECT_EQ(StatusOf(t->base_url() + "/healthz"), 200) << "the process is up all the same";

  ASSERT_OK(pg_->Restart());
  EXPECT_TRUE(BecomesReady(*t)) << "not ready again after the database returned";
}

TEST_F(TreatydTest, StartsBeforeTheDatabaseAndWaitsForIt) {
  ASSERT_OK(pg_->Stop());
  auto t = StartTreatyd(TreatydConfig(*pg_));
  ASSERT_TRUE(t);
  EXPECT_EQ(StatusOf(t->base_url() + "/healthz"), 200);
  auto r = HttpCall("GET", t->base_url() + "/readyz");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("\"status\":\"starting\""), std::string::npos) << r->body;
  ASSERT_OK(pg_->Restart());
  EXPECT_TRUE(BecomesReady(*t));
}

TEST_F(TreatydTest, MigrationsAreIdempotent) {
  for (int run = 0; run < 2; ++run) {
    auto t = StartTreatyd(TreatydConfig(*pg_));
    ASSERT_TRUE(t);
    ASSERT_TRUE(BecomesReady(*t));
    auto code = t->Stop();
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << "SIGTERM should end treatyd cleanly";
    std::string log = t->process().ReadLog();
    EXPECT_NE(log.find(run == 0 ? "store schema migrated" : "store schema up to date"),
              std::string::npos)
        << log;
  }
  auto versions = pg_->QueryValue(
      "treaty", "SELECT count(*) || ':' || count(DISTINCT version) FROM treaty.schema_migrations");
  ASSERT_TRUE(versions.ok()) << versions.status().message();
  const std::string all = std::to_string(store::Migrations().size());
  EXPECT_EQ(*versions, all + ":" + all) << "every migration applied once";
}

TEST_F(TreatydTest, EnvironmentOverrideWinsOverTheFile) {
  // The file points at a port where nothing listens; the environment at the real database.
  auto t = StartTreatyd(
      "listen: 127.0.0.1:0\nstore: { url: \"postgresql://postgres@127.0.0.1:1/treaty\" }\n",
      {{"TREATY_STORE_URL", pg_->Url("treaty")}});
  ASSERT_TRUE(t);
  EXPECT_TRUE(BecomesReady(*t));
}

TEST_F(TreatydTest, LogsOneJsonObjectPerLineWithSecretsMasked) {
  auto t =
      StartTreatyd("listen: 127.0.0.1:0\nstore: { url: \"postgresql://postgres:hunter2@127.0.0.1:" +
                   std::to_string(pg_->port()) + "/treaty\" }\n");
  ASSERT_TRUE(t);
  ASSERT_TRUE(BecomesReady(*t));
  ASSERT_TRUE(t->Stop().ok());
  std::string log = t->process().ReadLog();
  EXPECT_EQ(log.find("hunter2"), std::string::npos) << "the password reached the log";
  EXPECT_NE(log.find("postgres:****@"), std::string::npos) << log;
  std::istringstream lines(log);
  std::string line;
  int count = 0;
  while (std::getline(lines, line)) {
    Poco::JSON::Parser parser;
    Poco::JSON::Object::Ptr obj;
    ASSERT_NO_THROW(obj = parser.parse(line).extract<Poco::JSON::Object::Ptr>()) << line;
    EXPECT_TRUE(obj->has("time") && obj->has("level") && obj->has("component") &&
                obj->has("message"))
        << line;
    ++count;
  }
  EXPECT_GE(count, 3);
}

// --check-config and bad config files: the process says what is wrong and where, and exits 2
// before doing anything.
class CheckConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("check-config");
    ASSERT_TRUE(dir.ok());
    dir_ = std::move(*dir);
  }

  // Runs treatyd with `args` and returns {exit status, everything it printed}.
  std::pair<int, std::string> Run(std::vector<std::string> args,
                                  std::vector<std::pair<std::string, std::string>> env = {}) {
    args.insert(args.begin(), kTreatydPath);
    auto p = Process::Start(ProcessSpec{.name = "treatyd-check",
                                        .argv = args,
                                        .env = std::move(env),
                                        .log_path = dir_.File("out-" + std::to_string(++runs_))});
    if (!p.ok()) return {-1, p.status().message()};
    auto code = (*p)->Wait(std::chrono::seconds(30));
    return {code.ok() ? *code : -1, (*p)->ReadLog()};
  }

  std::string Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_.File(name)) << text;
    return dir_.File(name);
  }

  TempDir dir_;
  int runs_ = 0;
};

TEST_F(CheckConfigTest, AcceptsAValidFile) {
  std::string f = Write("ok.yaml", "listen: 127.0.0.1:8420\nretry: { initial: 100ms }\n");
  auto [code, out] = Run({"--check-config", f});
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(out, f + ": ok\n");
}

TEST_F(CheckConfigTest, NamesFileLineAndKeyOfEachProblem) {
  std::string f = Write("bad.yaml",
                        "listen: 127.0.0.1:8420\n"
                        "store:\n"
                        "  url: mysql://db/treaty\n"
                        "timeouts:\n"
                        "  prepare: ten seconds\n"
                        "retries: {}\n");
  auto [code, out] = Run({"--check-config", f});
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out,
            f + ":3: store.url: URL must start with postgresql:// or postgres://\n" + f +
                ":5: timeouts.prepare: \"ten seconds\" is not a duration (write e.g. 200ms, "
                "30s, 5m)\n" +
                f +
                ":6: retries: unknown key (expected one of: auth, kafka, limits, listen, "
                "log, msg, node_id, participants, propagate_headers, retention, retry, "
                "sagas, scheduler, secret_headers, store, timeouts, tls, tracing, webhooks)\n");
}

TEST_F(CheckConfigTest, ABadConfigStopsStartUpBeforeServing) {
  std::string f = Write("bad.yaml", "listen: 127.0.0.1:0\nlog: { level: chatty }\n");
  auto [code, out] = Run({"--config", f, "--address-file", dir_.File("addr")});
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out, f + ":2: log.level: \"chatty\" is not one of: debug, info, warn, error\n");
  EXPECT_FALSE(std::ifstream(dir_.File("addr")).good()) << "it served despite the bad config";
}

TEST_F(CheckConfigTest, BadEnvironmentOverrideIsNamed) {
  std::string f = Write("ok.yaml", "listen: 127.0.0.1:8420\n");
  auto [code, out] = Run({"--check-config", f}, {{"TREATY_TIMEOUTS_BRANCH_CALL", "-3s"}});
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out,
            "environment variable TREATY_TIMEOUTS_BRANCH_CALL: timeouts.branch_call: \"-3s\" is "
            "not a duration (write e.g. 200ms, 30s, 5m)\n");
}

TEST_F(CheckConfigTest, MissingFileAndUnknownOption) {
  auto [code, out] = Run({"--check-config", dir_.File("absent.yaml")});
  EXPECT_EQ(code, 2);
  EXPECT_EQ(out, dir_.File("absent.yaml") + ": cannot read the config file\n");
  auto [code2, out2] = Run({"--frobnicate"});
  EXPECT_EQ(code2, 2);
  EXPECT_NE(out2.find("frobnicate"), std::string::npos) << out2;
}

}  // namespace
}  // namespace treaty::harness
