// deploy/docker-compose.yml cannot run here (no container engine); this keeps it honest: it
// parses, names the stack's services, and runs each Treaty process with a config file that
// exists in config/ and is valid (the same files the embedded demo checks).

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>

#include "integration-tests/harness/binaries.h"

namespace treaty::harness {
namespace {

TEST(DeployTest, ComposeFileParsesAndUsesTheDemoConfigs) {
  YAML::Node compose = YAML::LoadFile(std::string(kSourceDir) + "/deploy/docker-compose.yml");
  YAML::Node services = compose["services"];
  ASSERT_TRUE(services.IsMap());
  std::set<std::string> names;
  for (auto it = services.begin(); it != services.end(); ++it) names.insert(it->first.Scalar());
  EXPECT_EQ(names, (std::set<std::string>{"postgres", "kafka", "treatyd", "order-svc",
                                          "inventory-svc", "treaty-relay"}));
  for (const char* name : {"treatyd", "order-svc", "inventory-svc", "treaty-relay"}) {
    YAML::Node entry = services[name]["entrypoint"];
    ASSERT_TRUE(entry.IsSequence()) << name;
    EXPECT_EQ(entry[0].Scalar(), name);
    ASSERT_EQ(entry[1].Scalar(), "--config") << name;
    std::string config = entry[2].Scalar();
    ASSERT_EQ(config.rfind("/etc/treaty/", 0), 0u) << config;
    std::string local = std::string(kSourceDir) + "/config/" + config.substr(12);
    EXPECT_TRUE(std::filesystem::exists(local)) << name << " mounts " << local;
  }
  EXPECT_TRUE(std::filesystem::exists(std::string(kSourceDir) + "/deploy/Dockerfile"));
  EXPECT_TRUE(std::filesystem::exists(std::string(kSourceDir) + "/config/sagas/place-order.yaml"));
}

}  // namespace
}  // namespace treaty::harness
