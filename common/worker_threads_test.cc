#include "common/worker_threads.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace treaty {
namespace {

// A gate the tasks wait at until the test opens it.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int waiting = 0;
  void Wait() {
    std::unique_lock<std::mutex> lock(mu);
    ++waiting;
    cv.notify_all();
    cv.wait(lock, [&] { return open; });
  }
  bool WaitForWaiting(int n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return waiting >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
};

TEST(WorkerThreadsTest, StartsAThreadOnlyWhenEveryStartedOneIsBusy) {
  WorkerThreads pool(8);
  EXPECT_EQ(pool.threads(), 0);
  std::atomic<int> done{0};
  // One task at a time, each posted once the thread is idle again: it serves them all.
  for (int i = 0; i < 20; ++i) {
    pool.Post([&] { ++done; });
    while (done.load() <= i || pool.idle_threads() < 1) std::this_thread::yield();
  }
  EXPECT_EQ(pool.threads(), 1);
  // Three blocked at once need three threads.
  Gate gate;
  for (int i = 0; i < 3; ++i) pool.Post([&] { gate.Wait(); });
  ASSERT_TRUE(gate.WaitForWaiting(3));
  EXPECT_EQ(pool.threads(), 3);
  gate.Open();
}

TEST(WorkerThreadsTest, BeyondTheMaximumTasksWaitTheirTurn) {
  WorkerThreads pool(2);
  Gate gate;
  std::atomic<int> done{0};
  for (int i = 0; i < 5; ++i) {
    pool.Post([&] {
      gate.Wait();
      ++done;
    });
  }
  ASSERT_TRUE(gate.WaitForWaiting(2));
  EXPECT_EQ(pool.threads(), 2);
  EXPECT_EQ(done.load(), 0);
  gate.Open();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (done.load() < 5 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(done.load(), 5);
  EXPECT_EQ(pool.threads(), 2);
}

TEST(WorkerThreadsTest, StopWaitsForRunningTasksAndDropsQueuedOnes) {
  auto pool = std::make_unique<WorkerThreads>(1);
  Gate gate;
  std::atomic<int> done{0};
  pool->Post([&] {
    gate.Wait();
    ++done;
  });
  pool->Post([&] { ++done; });  // queued behind the first
  ASSERT_TRUE(gate.WaitForWaiting(1));
  std::thread stopper([&] { pool->Stop(); });
  // The running task ends only once Stop has begun: the queued one must not run after it.
  while (!pool->stopped()) std::this_thread::yield();
  gate.Open();
  stopper.join();
  EXPECT_EQ(done.load(), 1);    // the running one finished; the queued one never ran
  pool->Post([&] { ++done; });  // after Stop: dropped
  pool.reset();
  EXPECT_EQ(done.load(), 1);
}

}  // namespace
}  // namespace treaty
