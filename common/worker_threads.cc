#include "common/worker_threads.h"

#include <algorithm>
#include <utility>

namespace treaty {

WorkerThreads::WorkerThreads(int max_threads) : max_threads_(std::max(1, max_threads)) {}

WorkerThreads::~WorkerThreads() { Stop(); }

void WorkerThreads::Post(std::function<void()> task) {
  MutexLock lock(mu_);
  if (stopping_) return;
  queue_.push_back(std::move(task));
  // A new thread only when the idle ones are all spoken for by the tasks already queued.
  if (static_cast<size_t>(idle_) < queue_.size() &&
      static_cast<int>(threads_.size()) < max_threads_) {
    threads_.emplace_back([this] { Run(); });
  } else {
    work_.notify_one();
  }
}

void WorkerThreads::Run() {
  MutexLock lock(mu_);
  while (true) {
    ++idle_;
    work_.wait(lock.native(), [&]() REQUIRES(mu_) { return stopping_ || !queue_.empty(); });
    --idle_;
    if (stopping_) return;
    std::function<void()> task = std::move(queue_.front());
    queue_.pop_front();
    {
      MutexUnlock unlock(mu_);
      task();
    }
  }
}

void WorkerThreads::Stop() {
  std::vector<std::thread> threads;
  {
    MutexLock lock(mu_);
    stopping_ = true;
    queue_.clear();
    threads.swap(threads_);
  }
  work_.notify_all();
  for (std::thread& t : threads) t.join();
}

int WorkerThreads::threads() {
  MutexLock lock(mu_);
  return static_cast<int>(threads_.size());
}

bool WorkerThreads::stopped() {
  MutexLock lock(mu_);
  return stopping_;
}

int WorkerThreads::idle_threads() {
  MutexLock lock(mu_);
  return idle_;
}

}  // namespace treaty
