// The quick check of deploy/docker-compose.yml, without a container engine: it parses, names the
// stack's services, and runs each Treaty process with a config file that exists in config/ and
// is valid (the same files the embedded demo checks). scripts/compose-test (ctest label
// containers) runs the stack for real.

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <set>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/temp_dir.h"

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

  // Each process's config file with the compose file's environment (defaults of ${VAR:-x}
  // taken) is valid: e.g. treatyd listening on 0.0.0.0 has its tokens.
  const std::map<std::string, std::string> binaries = {{"treatyd", kTreatydPath},
                                                       {"order-svc", kOrderSvcPath},
                                                       {"inventory-svc", kInventorySvcPath},
                                                       {"treaty-relay", kRelayPath}};
  for (const auto& [name, binary] : binaries) {
    std::vector<std::pair<std::string, std::string>> env;
    for (auto it = services[name]["environment"].begin(); it != services[name]["environment"].end();
         ++it) {
      std::string value = it->second.Scalar();
      if (value.rfind("${", 0) == 0 && value.find(":-") != std::string::npos) {
        value = value.substr(value.find(":-") + 2, value.size() - value.find(":-") - 3);
      }
      env.emplace_back(it->first.Scalar(), value);
    }
    std::string config = services[name]["entrypoint"][2].Scalar();
    auto dir = TempDir::Create("compose-check");
    ASSERT_TRUE(dir.ok());
    auto p = Process::Start(
        ProcessSpec{.name = name,
                    .argv = {binary, "--check-config",
                             std::string(kSourceDir) + "/config/" + config.substr(12)},
                    .env = env,
                    .log_path = dir->File("check.log"),
                    .cwd = std::string(kSourceDir) + "/config"});
    ASSERT_TRUE(p.ok());
    auto code = (*p)->Wait(std::chrono::seconds(30));
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 0) << name << " with the compose environment: " << (*p)->ReadLog();
  }
  EXPECT_TRUE(std::filesystem::exists(std::string(kSourceDir) + "/config/sagas/place-order.yaml"));
}

// deploy/docker-compose.ha.yml, used on top of the base file: a monitor and two nodes from one
// image, each node pointed at the monitor, treatyd's store URL naming both nodes with
// target_session_attrs=read-write and the database the nodes create, and treatyd's config valid
// with the merged environment; each formation container on a fixed address of the file's subnet
// (peers' addresses are in pg_hba.conf) with a fresh /tmp (pg_autoctl's pid files). The
// containers are started by scripts/compose-ha-test (ctest containers.ComposeHaStack).
// `key` of a compose service, looked up through YAML merge keys (`<<: *anchor`) as Compose
// does; yaml-cpp does not resolve them.
YAML::Node Field(const YAML::Node& service, const std::string& key) {
  if (service[key]) return service[key];
  if (service["<<"]) return Field(service["<<"], key);
  return YAML::Node();
}

TEST(DeployTest, HaComposeFileIsConsistentWithTheBaseFile) {
  YAML::Node ha = YAML::LoadFile(std::string(kSourceDir) + "/deploy/docker-compose.ha.yml");
  YAML::Node base = YAML::LoadFile(std::string(kSourceDir) + "/deploy/docker-compose.yml");
  YAML::Node services = ha["services"];
  ASSERT_TRUE(services.IsMap());
  std::set<std::string> names;
  for (auto it = services.begin(); it != services.end(); ++it) names.insert(it->first.Scalar());
  EXPECT_EQ(names, (std::set<std::string>{"pg-monitor", "pg-node1", "pg-node2", "treatyd"}));
  EXPECT_TRUE(std::filesystem::exists(
      std::string(kSourceDir) + "/" +
      Field(services["pg-monitor"], "build")["dockerfile"].as<std::string>("(none)")));
  // The value after `flag` in a service's command.
  auto arg = [&](const std::string& service, const std::string& flag) {
    YAML::Node command = services[service]["command"];
    for (size_t i = 0; i + 1 < command.size(); ++i) {
      if (command[i].Scalar() == flag) return command[i + 1].Scalar();
    }
    return std::string();
  };
  const std::string monitor = arg("pg-monitor", "--hostname") + ":" + arg("pg-monitor", "--pgport");
  std::string hosts;
  for (const char* node : {"pg-node1", "pg-node2"}) {
    EXPECT_EQ(Field(services[node], "image").as<std::string>(""),
              Field(services["pg-monitor"], "image").as<std::string>("(none)"))
        << node;
    EXPECT_EQ(arg(node, "--hostname"), node);
    EXPECT_EQ(arg(node, "--dbname"), "treaty") << node;
    EXPECT_NE(arg(node, "--monitor").find("@" + monitor + "/pg_auto_failover"), std::string::npos)
        << node << " does not point at the monitor " << monitor;
    hosts += (hosts.empty() ? "" : ",") + std::string(node) + ":" + arg(node, "--pgport");
  }
  const std::string subnet = ha["networks"]["default"]["ipam"]["config"][0]["subnet"].Scalar();
  ASSERT_EQ(subnet.substr(subnet.size() - 3), "/24") << subnet;
  std::set<std::string> addresses;
  for (const char* service : {"pg-monitor", "pg-node1", "pg-node2"}) {
    const std::string address =
        services[service]["networks"]["default"]["ipv4_address"].as<std::string>("");
    EXPECT_EQ(address.substr(0, address.rfind('.')), subnet.substr(0, subnet.rfind('.')))
        << service << " at " << address << " is not in " << subnet;
    addresses.insert(address);
    EXPECT_EQ(Field(services[service], "tmpfs")[0].as<std::string>(""), "/tmp") << service;
  }
  EXPECT_EQ(addresses.size(), 3u) << "the formation's containers need an address each";
  const std::string store = services["treatyd"]["environment"]["TREATY_STORE_URL"].Scalar();
  EXPECT_NE(store.find("@" + hosts + "/treaty?"), std::string::npos) << store;
  EXPECT_NE(store.find("target_session_attrs=read-write"), std::string::npos) << store;
  // The base file's treatyd is the one overridden: its config with the merged environment.
  ASSERT_TRUE(base["services"]["treatyd"].IsMap());
  std::map<std::string, std::string> env;
  for (YAML::Node file : {base["services"]["treatyd"], services["treatyd"]}) {
    for (auto it = file["environment"].begin(); it != file["environment"].end(); ++it) {
      std::string value = it->second.Scalar();
      if (value.rfind("${", 0) == 0 && value.find(":-") != std::string::npos) {
        value = value.substr(value.find(":-") + 2, value.size() - value.find(":-") - 3);
      }
      env[it->first.Scalar()] = value;
    }
  }
  auto dir = TempDir::Create("compose-ha-check");
  ASSERT_TRUE(dir.ok());
  auto p = Process::Start(
      ProcessSpec{.name = "treatyd",
                  .argv = {kTreatydPath, "--check-config",
                           std::string(kSourceDir) + "/config/" +
                               base["services"]["treatyd"]["entrypoint"][2].Scalar().substr(12)},
                  .env = {env.begin(), env.end()},
                  .log_path = dir->File("check.log"),
                  .cwd = std::string(kSourceDir) + "/config"});
  ASSERT_TRUE(p.ok());
  auto code = (*p)->Wait(std::chrono::seconds(30));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0) << "treatyd with the HA compose environment: " << (*p)->ReadLog();
}

}  // namespace
}  // namespace treaty::harness
