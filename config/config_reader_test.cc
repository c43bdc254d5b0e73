#include "config/config_reader.h"

#include <gtest/gtest.h>

namespace treaty {
namespace {

Environment NoEnv() {
  return [](const std::string&) { return std::optional<std::string>(); };
}

TEST(ConfigReader, EnvNameFollowsThePath) {
  ConfigReader r("x.yaml", "", NoEnv(), "TREATY_RELAY_");
  EXPECT_EQ(r.EnvName("kafka.bootstrap_servers"), "TREATY_RELAY_KAFKA_BOOTSTRAP_SERVERS");
}

TEST(ConfigReader, KeepsDefaultsForAbsentKeys) {
  ConfigReader r("x.yaml", "a: {}\n", NoEnv());
  int64_t n = 7;
  bool b = true;
  r.Int("a.n", &n, 0, 10);
  r.Bool("a.b", &b);
  ASSERT_TRUE(r.Finish().ok());
  EXPECT_EQ(n, 7);
  EXPECT_TRUE(b);
}

TEST(ConfigReader, NullSectionMeansDefaults) {
  ConfigReader r("x.yaml", "a:\n", NoEnv());
  int64_t n = 7;
  r.Int("a.n", &n, 0, 10);
  EXPECT_TRUE(r.Finish().ok());
  EXPECT_EQ(n, 7);
}

TEST(ConfigReader, IntRangeAndBool) {
  ConfigReader r("x.yaml", "n: 11\nb: yes\n", NoEnv());
  int64_t n = 0;
  bool b = false;
  r.Int("n", &n, 0, 10);
  r.Bool("b", &b);
  Status s = r.Finish();
  EXPECT_EQ(
      s.message(),
      "x.yaml:1: n: \"11\" is out of range (0 to 10)\nx.yaml:2: b: \"yes\" is not true or false");
}

TEST(ConfigReader, TopLevelMustBeAMapping) {
  ConfigReader r("x.yaml", "- a\n- b\n", NoEnv());
  EXPECT_EQ(r.Finish().message(), "x.yaml:1: the file must be a mapping of keys, found a list");
}

}  // namespace
}  // namespace treaty
