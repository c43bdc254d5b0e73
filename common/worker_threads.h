#pragma once

// Threads for blocking work (HTTP handlers that wait on the store), started as the work needs
// them rather than all at once: a task posted while every started thread is busy starts a new
// one, up to `max_threads`; beyond that tasks wait in order. Started threads stay until Stop().
// The number of threads thus follows the most tasks ever run at once, not the configured
// maximum: each thread costs its touched stack and malloc state (about 100 KB under load,
// docs/performance.md finding 44), and a maximum sized for bursts of waiting clients should not
// be paid for at every load. Thread-safe.

#include <condition_variable>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"

namespace treaty {

class WorkerThreads {
 public:
  explicit WorkerThreads(int max_threads);
  // Stop().
  ~WorkerThreads();

  WorkerThreads(const WorkerThreads&) = delete;
  WorkerThreads& operator=(const WorkerThreads&) = delete;

  // Runs `task` on a worker thread: an idle one, a new one while fewer than max_threads exist,
  // or the first to become free. Dropped after Stop().
  void Post(std::function<void()> task) EXCLUDES(mu_);

  // Tasks not yet started are dropped; returns once the running ones have finished and every
  // thread has ended. Must not be called from a worker thread.
  void Stop() EXCLUDES(mu_);

  // Whether Stop() has begun (Post drops tasks from then on).
  bool stopped() EXCLUDES(mu_);

  // Threads started so far, and those of them waiting for a task.
  int threads() EXCLUDES(mu_);
  int idle_threads() EXCLUDES(mu_);

 private:
  void Run() EXCLUDES(mu_);

  const int max_threads_;
  Mutex mu_;
  std::condition_variable work_;
  std::deque<std::function<void()>> queue_ GUARDED_BY(mu_);
  int idle_ GUARDED_BY(mu_) = 0;  // threads waiting for a task
  bool stopping_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ GUARDED_BY(mu_);
};

}  // namespace treaty
