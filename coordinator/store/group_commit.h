#pragma once

// Group commit: store writes from many threads share one database transaction, so that one
// commit (one WAL flush when synchronous_commit is on) serves many state changes. Each write
// runs in its own SAVEPOINT inside the batch: a write that fails (a Conflict, an SQL error) is
// rolled back alone, and the others still commit. A caller returns only once its batch has
// committed, so "durable before the next side effect" holds exactly as without grouping.
//
// One batch runs at a time (the first waiting caller runs it, leader-style, then hands over),
// so batches never lock each other's rows.

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>

#include "common/pg/pg_pool.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace treaty::store {

class GroupCommitter {
 public:
  // `pool` must outlive this. `max_batch` bounds the writes per database transaction.
  GroupCommitter(pg::PgPool& pool, int max_batch);

  // Runs `write` inside a savepoint of a shared transaction and returns once that transaction
  // committed (its status), or the batch failed (Unavailable / Internal for every write in it).
  Status Run(std::function<Status(pqxx::transaction_base&)> write);

 private:
  struct Pending {
    std::function<Status(pqxx::transaction_base&)> write;
    Status result;
    bool done = false;  // guarded by GroupCommitter::mu_ (a nested struct: not annotated)
  };
  void RunBatch(std::deque<std::shared_ptr<Pending>>& batch);

  pg::PgPool& pool_;
  const size_t max_batch_;
  Mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Pending>> queue_ GUARDED_BY(mu_);
  bool leader_active_ GUARDED_BY(mu_) = false;
};

}  // namespace treaty::store
