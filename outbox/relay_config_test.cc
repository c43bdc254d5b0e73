#include "outbox/relay_config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace treaty::outbox {
namespace {

Result<RelayConfig> Load(const std::string& yaml) {
  // One directory per test: ctest runs the tests of this file as parallel processes.
  const std::string dir =
      ::testing::TempDir() + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
  std::filesystem::create_directories(dir);
  const std::string path = dir + "relay.yaml";
  std::ofstream(path) << yaml;
  auto c = LoadRelayConfig(
      path, [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
  std::remove(path.c_str());
  return c;
}

// A failover pair's multi-host URL (docs/deployment.md) is kept as written: libpq reads the
// host list and target_session_attrs, and finds the new primary after a failover.
TEST(RelayConfig, DatabaseUrlMayListSeveralHosts) {
  const std::string url =
      "postgresql://relay@db1:5432,db2:5433/orders?target_session_attrs=read-write";
  auto c = Load("database: { url: \"" + url + "\" }\n");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->database_url, url);
  auto bad = Load("database:\n  url: \"postgresql://db1:5432,,db2/orders\"\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("relay.yaml:2: database.url: URL has an empty host in its "
                                        "list"),
            std::string::npos)
      << bad.status().message();
}

}  // namespace
}  // namespace treaty::outbox
