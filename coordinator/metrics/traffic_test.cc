#include "coordinator/metrics/traffic.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "coordinator/metrics/treaty_metrics.h"

namespace treaty::metrics {
namespace {

using std::chrono::microseconds;
using std::chrono::seconds;
using TimePoint = std::chrono::system_clock::time_point;

// The text of the JSON array named `key` in `json`.
std::string ArrayOf(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":[");
  if (at == std::string::npos) return "";
  const size_t open = json.find('[', at);
  return json.substr(open + 1, json.find(']', open) - open - 1);
}

// The last `n` values of a comma-separated list.
std::string Last(const std::string& list, int n) {
  size_t at = list.size();
  for (int i = 0; i < n && at != std::string::npos; ++i) {
    at = at == 0 ? std::string::npos : list.rfind(',', at - 1);
  }
  return at == std::string::npos ? list : list.substr(at + 1);
}

// The sum of a comma-separated list of counts.
int Sum(const std::string& list) {
  int sum = 0;
  for (size_t at = 0; at < list.size();) {
    size_t comma = list.find(',', at);
    sum += std::stoi(list.substr(at, comma - at));
    at = comma == std::string::npos ? list.size() : comma + 1;
  }
  return sum;
}

TEST(Traffic, CountsEachSecondInItsOwnBucketAndForgetsWhatIsOlderThanTheRing) {
  TimePoint now = TimePoint(seconds(1'800'000'000));
  Traffic t([&] { return now; });
  t.OnFinished(true);
  t.OnFinished(true);
  t.OnFinished(false);
  t.OnCall(microseconds(900), true);
  now += seconds(1);
  t.OnFinished(true);
  t.OnCall(microseconds(50'000), false);
  std::string json = t.Json();
  EXPECT_EQ(Last(ArrayOf(json, "committed"), 2), "2,1") << json;
  EXPECT_EQ(Last(ArrayOf(json, "aborted"), 2), "1,0") << json;
  EXPECT_EQ(Last(ArrayOf(json, "calls"), 2), "1,1") << json;
  EXPECT_EQ(Last(ArrayOf(json, "failed_calls"), 2), "0,1") << json;
  EXPECT_NE(json.find("\"end\":\"2027-01-15T08:00:01Z\""), std::string::npos) << json;
  // Always the whole window, quiet seconds as zeros (no p99 without calls).
  std::string committed = ArrayOf(json, "committed");
  EXPECT_EQ(std::count(committed.begin(), committed.end(), ','), Traffic::kSeconds - 1);
  EXPECT_EQ(ArrayOf(json, "call_p99_ms").substr(0, 5), "null,");

  // A whole ring later, the old buckets read as empty, and one written again starts from zero.
  now += seconds(Traffic::kSeconds);
  t.OnFinished(false);
  json = t.Json();
  EXPECT_EQ(Last(ArrayOf(json, "committed"), 2), "0,0") << json;
  EXPECT_EQ(Last(ArrayOf(json, "aborted"), 1), "1") << json;
  std::string calls = ArrayOf(json, "calls");
  EXPECT_EQ(calls.find_first_not_of("0,"), std::string::npos) << calls;
}

TEST(Traffic, TheP99IsTheUpperBoundOfTheBinItFallsIn) {
  std::array<uint32_t, Traffic::kBins> bins{};
  EXPECT_LT(Traffic::P99Ms(bins), 0);
  // 99 fast calls and one slow: the p99 is still the fast ones' bin; two slow ones move it.
  bins[static_cast<size_t>(Traffic::BinOf(microseconds(800)))] = 99;
  bins[static_cast<size_t>(Traffic::BinOf(microseconds(2'000'000)))] = 1;
  const double fast = Traffic::P99Ms(bins);
  EXPECT_GE(fast, 0.8);
  EXPECT_LT(fast, 0.8 * 1.5);
  bins[static_cast<size_t>(Traffic::BinOf(microseconds(2'000'000)))] = 2;
  const double slow = Traffic::P99Ms(bins);
  EXPECT_GE(slow, 2000);
  EXPECT_LT(slow, 2000 * 1.5);
  EXPECT_EQ(Traffic::BinOf(microseconds(100'000'000)), Traffic::kBins - 1);
}

TEST(Traffic, TreatyMetricsFeedsItFromTheDriversEvents) {
  TreatyMetrics m(nullptr);
  core::Transaction tx;
  tx.gid = "secret-gid-123";
  tx.status = core::TxStatus::kCommitted;
  m.OnTransition(tx, core::TxStatus::kCommitting, "");
  core::BranchOp op;
  op.op = "commit";
  m.OnCall(tx, op, core::BranchReply{core::BranchReply::Outcome::kDone, 200, "", microseconds(5)});
  const std::string json = m.traffic().Json();
  EXPECT_EQ(Sum(ArrayOf(json, "committed")), 1) << json;
  EXPECT_EQ(Sum(ArrayOf(json, "calls")), 1) << json;
  EXPECT_EQ(json.find("secret"), std::string::npos);
}

}  // namespace
}  // namespace treaty::metrics
