#include "participants/kit/participant_config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

namespace treaty::participant {
namespace {

Environment NoEnv() {
  return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

// Writes `yaml` to a file of its own and loads it.
Result<ParticipantConfig> Load(const std::string& yaml) {
  // One directory per test: ctest runs the tests of this file as parallel processes.
  const std::string dir =
      ::testing::TempDir() + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "participant_config_test.yaml";
  std::ofstream(path) << yaml;
  auto c = LoadParticipantConfig(path, "TREATY_TEST_SVC_", NoEnv());
  std::remove(path.c_str());
  return c;
}

std::string ErrorOf(const std::string& yaml) {
  auto c = Load(yaml);
  EXPECT_FALSE(c.ok()) << "expected an error for:\n" << yaml;
  if (c.ok()) return "";
  // Drop the temporary directory from "<path>:<line>: ...".
  std::string m = c.status().message();
  return m.substr(m.find("participant_config_test.yaml"));
}

// A failover pair's multi-host URL (docs/deployment.md) is kept as written: libpq reads the
// host list and target_session_attrs, and finds the new primary after a failover.
TEST(ParticipantConfig, DatabaseUrlMayListSeveralHosts) {
  const std::string url =
      "postgresql://orders@db1:5432,db2:5433/orders?target_session_attrs=read-write";
  auto c = Load("database: { url: \"" + url + "\" }\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->database_url, url);
  EXPECT_EQ(ErrorOf("database:\n  url: \"postgresql://db1:5432,,db2/orders\"\n"),
            "participant_config_test.yaml:2: database.url: URL has an empty host in its list");
}

TEST(ParticipantConfig, RetentionDefaultsToAWeek) {
  auto c = LoadParticipantConfig("", "TREATY_TEST_SVC_", NoEnv());
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->retention_barrier_window, std::chrono::hours(24 * 7));
  EXPECT_EQ(c->retention_inbox_window, std::chrono::hours(24 * 7));
  EXPECT_EQ(c->retention_batch, 1000);
  EXPECT_EQ(c->retention_interval, std::chrono::minutes(1));
}

TEST(ParticipantConfig, ReadsRetention) {
  auto c = Load("retention: { barrier_window: 30d, inbox_window: 2d, batch: 200, interval: 5s }\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->retention_barrier_window, std::chrono::hours(24 * 30));
  EXPECT_EQ(c->retention_inbox_window, std::chrono::hours(48));
  EXPECT_EQ(c->retention_batch, 200);
  EXPECT_EQ(c->retention_interval, std::chrono::seconds(5));
}

TEST(ParticipantConfig, BadRetentionNamesFileLineAndKey) {
  EXPECT_EQ(ErrorOf("retention:\n  inbox_window: 10s\n"),
            "participant_config_test.yaml:2: retention.inbox_window: \"10s\" is too short (at "
            "least 1m)");
  EXPECT_EQ(ErrorOf("retention:\n  batch: -1\n"),
            "participant_config_test.yaml:2: retention.batch: \"-1\" is out of range (1 to "
            "100000)");
  EXPECT_EQ(ErrorOf("sweep: { older_than: 10m }\nretention:\n  barrier_window: 5m\n"),
            "participant_config_test.yaml:3: retention.barrier_window: must be longer than "
            "sweep.older_than (10m)");
  EXPECT_EQ(ErrorOf("retention:\n  window: 1d\n"),
            "participant_config_test.yaml:2: retention.window: unknown key (expected one of: "
            "barrier_window, batch, inbox_window, interval)");
}

}  // namespace
}  // namespace treaty::participant
