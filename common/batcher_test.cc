#include "common/batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

namespace treaty {
namespace {

TEST(BatcherTest, ALoneRequestRunsAtOnceAsABatchOfOne) {
  std::vector<size_t> sizes;
  Batcher<int, int> b(
      [&](const std::vector<const int*>& batch) {
        sizes.push_back(batch.size());
        return std::vector<int>{*batch[0] * 2};
      },
      16, 1);
  EXPECT_EQ(b.Submit("a", 21), 42);
  EXPECT_EQ(sizes, std::vector<size_t>{1});
}

// Many threads at once: every request gets its own reply, requests queue up into batches while
// one runs, no batch exceeds the limit, no two running batches or one batch share a key, and no
// more batches run at once than allowed.
TEST(BatcherTest, ConcurrentRequestsNeverShareAKeyOrExceedTheLimits) {
  constexpr int kThreads = 24;
  constexpr int kEach = 200;
  std::mutex mu;
  std::set<std::string> running;  // keys in running batches
  std::atomic<int> in_flight{0};
  std::atomic<int> max_in_flight{0};
  std::atomic<int> largest{0};
  std::atomic<int> key_clashes{0};
  Batcher<std::pair<std::string, int>, int> b(
      [&](const std::vector<const std::pair<std::string, int>*>& batch) {
        int now = ++in_flight;
        max_in_flight = std::max(max_in_flight.load(), now);
        largest = std::max(largest.load(), static_cast<int>(batch.size()));
        {
          std::lock_guard<std::mutex> lock(mu);
          for (const auto* r : batch) {
            if (!running.insert(r->first).second) ++key_clashes;
          }
        }
        std::this_thread::yield();
        std::vector<int> replies;
        {
          std::lock_guard<std::mutex> lock(mu);
          for (const auto* r : batch) {
            running.erase(r->first);
            replies.push_back(r->second + 1);
          }
        }
        --in_flight;
        return replies;
      },
      8, 2);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        // Three keys shared by all threads, so that the same key is often queued twice.
        std::string key = "k" + std::to_string((t + i) % 3 == 0 ? i % 3 : t * kEach + i);
        int value = t * kEach + i;
        if (b.Submit(key, {key, value}) != value + 1) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(key_clashes.load(), 0);
  EXPECT_LE(max_in_flight.load(), 2);
  EXPECT_LE(largest.load(), 8);
}

}  // namespace
}  // namespace treaty
