#include "coordinator/store/group_commit.h"

namespace treaty::store {

GroupCommitter::GroupCommitter(pg::PgPool& pool, int max_batch)
    : pool_(pool), max_batch_(static_cast<size_t>(std::max(1, max_batch))) {}

Status GroupCommitter::Run(std::function<Status(pqxx::transaction_base&)> write) {
  auto mine = std::make_shared<Pending>();
  mine->write = std::move(write);
  MutexLock lock(mu_);
  queue_.push_back(mine);
  while (!mine->done) {
    if (!leader_active_) {
      // Lead one batch: everything queued so far, ours included if it is still waiting.
      leader_active_ = true;
      std::deque<std::shared_ptr<Pending>> batch;
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      lock.Unlock();
      RunBatch(batch);
      lock.Lock();
      for (auto& p : batch) p->done = true;
      leader_active_ = false;
      cv_.notify_all();
      continue;
    }
    cv_.wait(lock.native(), [&]() REQUIRES(mu_) { return mine->done || !leader_active_; });
  }
  return mine->result;
}

void GroupCommitter::RunBatch(std::deque<std::shared_ptr<Pending>>& batch) {
  auto committed = pool_.Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::work w(c);
    for (auto& p : batch) {
      pqxx::subtransaction sub(w);
      try {
        p->result = p->write(sub);
      } catch (const std::exception& e) {
        p->result = pg::StatusFromException(e);
        if (pg::IsConnectionLost(e)) throw;
      }
      if (p->result.ok()) {
        sub.commit();
      } else {
        sub.abort();
      }
    }
    w.commit();
    return true;
  });
  if (!committed.ok()) {
    // Every write in the batch shares its fate: none is durable, or (the connection lost
    // during COMMIT: Unavailable, outcome unknown) perhaps all are. Either way each writer gets
    // the status and must read the state again before acting on it, never assume.
    for (auto& p : batch) p->result = committed.status();
  }
}

}  // namespace treaty::store
