#include "coordinator/core/retry_policy.h"

#include <gtest/gtest.h>

namespace treaty::core {
namespace {

using std::chrono::milliseconds;

TEST(RetryPolicy, GrowsExponentiallyUpToTheCap) {
  RetryPolicy p{milliseconds(100), milliseconds(1000), 2.0, 0.0};
  EXPECT_EQ(p.Backoff(1, 0.5), milliseconds(100));
  EXPECT_EQ(p.Backoff(2, 0.5), milliseconds(200));
  EXPECT_EQ(p.Backoff(3, 0.5), milliseconds(400));
  EXPECT_EQ(p.Backoff(4, 0.5), milliseconds(800));
  EXPECT_EQ(p.Backoff(5, 0.5), milliseconds(1000));
  EXPECT_EQ(p.Backoff(1000, 0.5), milliseconds(1000));
}

TEST(RetryPolicy, JitterStaysWithinItsFraction) {
  RetryPolicy p{milliseconds(1000), milliseconds(60'000), 2.0, 0.2};
  EXPECT_EQ(p.Backoff(1, 0.0), milliseconds(800));
  EXPECT_EQ(p.Backoff(1, 0.5), milliseconds(1000));
  EXPECT_EQ(p.Backoff(1, 0.999999), milliseconds(1199));
}

TEST(RetryPolicy, JitterNeverExceedsTheCap) {
  RetryPolicy p{milliseconds(1000), milliseconds(1000), 2.0, 1.0};
  EXPECT_LE(p.Backoff(3, 0.999), milliseconds(1000));
  EXPECT_GE(p.Backoff(3, 0.0), milliseconds(0));
}

}  // namespace
}  // namespace treaty::core
