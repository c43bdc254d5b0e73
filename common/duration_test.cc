#include "common/duration.h"

#include <gtest/gtest.h>

namespace treaty {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, ReadsEachUnit) {
  EXPECT_EQ(ParseDuration("200ms"), milliseconds(200));
  EXPECT_EQ(ParseDuration("30s"), milliseconds(30'000));
  EXPECT_EQ(ParseDuration("5m"), milliseconds(300'000));
  EXPECT_EQ(ParseDuration("2h"), milliseconds(7'200'000));
  EXPECT_EQ(ParseDuration("7d"), milliseconds(604'800'000));
  EXPECT_EQ(ParseDuration("1d12h"), milliseconds(129'600'000));
  EXPECT_EQ(ParseDuration("1.5s"), milliseconds(1500));
  EXPECT_EQ(ParseDuration("1m30s"), milliseconds(90'000));
  EXPECT_EQ(ParseDuration("0s"), milliseconds(0));
}

TEST(ParseDuration, RefusesWhatIsNotADuration) {
  for (const char* bad : {"", "30", "s", "ms", "-1s", "1x", "1 s", "abc", "1.2.3s", "9999h"}) {
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << bad;
  }
}

TEST(FormatDuration, RoundTrips) {
  for (int64_t ms : {0, 1, 999, 1000, 1500, 60'000, 90'000, 3'600'000, 3'723'004}) {
    auto text = FormatDuration(milliseconds(ms));
    EXPECT_EQ(ParseDuration(text), milliseconds(ms)) << text;
  }
  EXPECT_EQ(FormatDuration(milliseconds(90'000)), "1m30s");
  EXPECT_EQ(FormatDuration(milliseconds(200)), "200ms");
}

}  // namespace
}  // namespace treaty
