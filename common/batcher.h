#pragma once

// Batcher: concurrent requests run together, a batch at a time per slot (group commit).
//
// A caller queues its request; while fewer than `max_in_flight` batches run, it leads the next
// one: every queued request whose key is not in a running batch, up to `max_batch`, handed to
// `run` at once. Each caller returns when its own request has run. Under load the batches grow
// by themselves (everything that queued while the previous batch ran goes next); alone, a
// request runs at once as a batch of one.
//
// Requests with the same key never share a batch nor run at the same time: a batch may change
// each key's rows only once, and two running batches never wait on each other's row locks.
//
// Thread-safe. `run` is called on a caller's thread, never for an empty batch, and returns one
// reply per request, in order; it must not throw.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"

namespace treaty {

template <typename Request, typename Reply>
class Batcher {
 public:
  using RunFn = std::function<std::vector<Reply>(const std::vector<const Request*>&)>;

  Batcher(RunFn run, size_t max_batch, int max_in_flight)
      : run_(std::move(run)),
        max_batch_(max_batch < 1 ? 1 : max_batch),
        max_in_flight_(max_in_flight < 1 ? 1 : max_in_flight) {}

  Reply Submit(std::string key, Request request) {
    auto mine = std::make_shared<Pending>();
    mine->key = std::move(key);
    mine->request = std::move(request);
    MutexLock lock(mu_);
    queue_.push_back(mine);
    while (!mine->done) {
      if (in_flight_ < max_in_flight_) {
        std::vector<std::shared_ptr<Pending>> batch = TakeBatch();
        if (!batch.empty()) {
          RunBatch(batch);
          continue;
        }
      }
      // Woken when done, or to lead the next batch (RunBatch).
      mine->waiting = true;
      mine->cv.wait(lock.native());
      mine->waiting = false;
    }
    return std::move(mine->reply);
  }

 private:
  struct Pending {
    std::string key;
    Request request;
    Reply reply{};
    // Both guarded by Batcher::mu_ (not annotated: in a nested struct, Clang would read mu_ as
    // the struct's own member).
    bool done = false;
    bool waiting = false;        // its caller sleeps on cv
    std::condition_variable cv;  // its caller waits here: one wake-up each, no herd
  };

  // Runs `batch` unlocked, then hands out the replies and wakes their callers, and the first
  // queued caller to lead the next batch. Called with mu_ held.
  void RunBatch(const std::vector<std::shared_ptr<Pending>>& batch) REQUIRES(mu_) {
    ++in_flight_;
    std::vector<Reply> replies;
    {
      MutexUnlock unlocked(mu_);
      std::vector<const Request*> requests;
      requests.reserve(batch.size());
      for (const auto& p : batch) requests.push_back(&p->request);
      replies = run_(requests);
    }
    --in_flight_;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (i < replies.size()) batch[i]->reply = std::move(replies[i]);
      batch[i]->done = true;
      running_keys_.erase(batch[i]->key);
      batch[i]->cv.notify_one();
    }
    // A slot is free: the first queued caller that sleeps leads the next batch (one that is
    // leading a batch itself looks at the queue again when that batch ends).
    for (const auto& p : queue_) {
      if (p->waiting) {
        p->cv.notify_one();
        break;
      }
    }
  }

  // The next batch, out of the queue, its keys marked running.
  std::vector<std::shared_ptr<Pending>> TakeBatch() REQUIRES(mu_) {
    std::vector<std::shared_ptr<Pending>> batch;
    for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch_;) {
      if (!running_keys_.insert((*it)->key).second) {
        ++it;  // its key runs now (or is in this batch already): a later batch takes it
        continue;
      }
      batch.push_back(std::move(*it));
      it = queue_.erase(it);
    }
    return batch;
  }

  const RunFn run_;
  const size_t max_batch_;
  const int max_in_flight_;

  Mutex mu_;
  std::deque<std::shared_ptr<Pending>> queue_ GUARDED_BY(mu_);
  std::set<std::string> running_keys_ GUARDED_BY(mu_);  // keys in a running batch
  int in_flight_ GUARDED_BY(mu_) = 0;
};

}  // namespace treaty
