#include "coordinator/core/transaction_driver.h"

#include <algorithm>

#include "coordinator/core/drive_context_impl.h"
#include "coordinator/core/state_machine.h"

namespace treaty::core {

TransactionDriver::TransactionDriver(DriverOptions options, TransactionStore& store,
                                     BranchTransport& transport, Clock& clock, IdGenerator& random,
                                     CrashPoints& crash, ProcessorRegistry processors,
                                     DriverObserver* observer, MessageSink* messages)
    : options_(std::move(options)),
      store_(store),
      transport_(transport),
      clock_(clock),
      random_(random),
      crash_(crash),
      processors_(std::move(processors)),
      observer_(observer),
      messages_(messages) {}

TransactionDriver::~TransactionDriver() { Stop(); }

Status TransactionDriver::ApplyTransition(Transaction& tx, TxStatus to, const std::string& reason,
                                          const std::vector<BranchOp>& ops, const Fence* fence) {
  const TxStatus from = tx.status;
  const TimePoint now = clock_.Now();
  Status s = store_.Transition(tx.gid, from, to, reason, now, ops, fence);
  if (!s.ok()) return s;
  tx.status = to;
  tx.reason = reason;
  tx.updated_at = tx.next_attempt_at = now;
  if (observer_) observer_->OnTransition(tx, from, reason);
  if (IsFinal(to)) NotifyFinal(tx);
  const core::Transition* t = FindTransition(tx.mode, from, to);
  if (t != nullptr && t->decision) crash_.Reach("after_decision");
  return Status::Ok();
}

Status TransactionDriver::Start() {
  Status s = store_.ReleaseLeases(options_.node_id.empty() ? options_.owner : options_.node_id);
  if (!s.ok()) return s;
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { WorkerLoop(); });
  threads_.emplace_back([this] { PollLoop(); });
  return Status::Ok();
}

void TransactionDriver::Stop() {
  {
    MutexLock lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  work_cv_.notify_all();
  poll_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

void TransactionDriver::Enqueue(const std::string& gid, std::optional<MonoTime> leased_until,
                                std::optional<Transaction> as_stored) {
  {
    MutexLock lock(mu_);
    if (running_.count(gid)) {
      rerun_.insert(gid);
      return;
    }
    if (!queued_.insert(gid).second) return;
    queue_.push_back(gid);
    // A long queue keeps gids only: its transactions are loaded when their turn comes.
    if (static_cast<int>(queue_.size()) > options_.keep_stored) as_stored.reset();
    if (leased_until || as_stored) known_[gid] = Known{leased_until, std::move(as_stored)};
  }
  work_cv_.notify_one();
}

void TransactionDriver::Kick(const std::string& gid) {
  const MonoTime now = clock_.Monotonic();
  auto leased = store_.TryLease(gid, options_.owner, options_.lease);
  if (leased.ok() && *leased) {
    Enqueue(gid, now + options_.lease);
  } else {
    WakePoller();
  }
}

std::optional<Transaction> TransactionDriver::KickHere(const std::string& gid,
                                                       std::optional<Transaction> as_stored) {
  const MonoTime now = clock_.Monotonic();
  auto leased = store_.TryLease(gid, options_.owner, options_.lease);
  if (leased.ok() && *leased) return DriveHere(gid, now + options_.lease, std::move(as_stored));
  WakePoller();
  return std::nullopt;
}

void TransactionDriver::WakePoller() { poll_cv_.notify_all(); }

bool TransactionDriver::Admit() {
  {
    MutexLock lock(mu_);
    if (static_cast<int>(queue_.size()) < options_.max_queued) return true;
  }
  if (observer_) observer_->OnRejected();
  return false;
}

void TransactionDriver::WorkerLoop() {
  while (true) {
    std::string gid;
    std::optional<MonoTime> leased_until;
    std::optional<Transaction> as_stored;
    {
      MutexLock lock(mu_);
      work_cv_.wait(lock.native(), [this]() REQUIRES(mu_) { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      gid = std::move(queue_.front());
      queue_.pop_front();
      queued_.erase(gid);
      running_.insert(gid);
      if (auto it = known_.find(gid); it != known_.end()) {
        leased_until = it->second.leased_until;
        as_stored = std::move(it->second.as_stored);
        known_.erase(it);
      }
    }
    DriveLeased(gid, leased_until, std::move(as_stored), nullptr);
    bool again = false;
    bool claim_more = false;
    {
      MutexLock lock(mu_);
      running_.erase(gid);
      again = rerun_.erase(gid) > 0;
      claim_more = claimed_last_time_ && queue_.empty();
    }
    if (again) Enqueue(gid);
    if (claim_more) WakePoller();
  }
}

bool TransactionDriver::DriveLeased(const std::string& gid, std::optional<MonoTime> leased_until,
                                    std::optional<Transaction> as_stored, Transaction* left) {
  // The lease may have run out while the transaction waited in the queue, or been given up by
  // an earlier drive (a re-run): take it (again) before driving, or leave it to its holder.
  // One taken moments ago (at creation, by the poller) is used as it is, as long as nearly all
  // of it is left: the drive gets the same time as with a lease taken now.
  const MonoTime now = clock_.Monotonic();
  Result<bool> leased = true;
  if (!leased_until || *leased_until - now < options_.lease * 9 / 10) {
    leased = store_.TryLease(gid, options_.owner, options_.lease);
    as_stored.reset();  // a stale lease: someone may have changed it meanwhile
    leased_until = now + options_.lease;
  }
  if (leased.status().code() == Status::Code::kNotFound) {
    // The store does not know it (a begin lost with the store's unforced records, or purged):
    // nothing to drive, and retrying would never end.
    if (observer_) observer_->OnDriveError(gid, leased.status());
    Interrupted(gid, /*done=*/true);
    return false;
  }
  if (!leased.ok()) {
    // The store is unreachable; this coordinator may still hold the lease (it created or
    // claimed the transaction): try again after the backoff.
    if (observer_) observer_->OnDriveError(gid, leased.status());
    Interrupted(gid, /*done=*/false);
    return false;
  }
  if (!*leased) {
    Interrupted(gid, /*done=*/true);  // another coordinator drives it
    return false;
  }
  try {
    return Drive(gid, *leased_until, std::move(as_stored), left).ok();
  } catch (const std::exception& e) {
    // Adapters return statuses; this is a last guard so one transaction cannot stop the
    // thread. It is driven again after the backoff.
    if (observer_) observer_->OnDriveError(gid, Status::Internal(e.what()));
    Interrupted(gid, /*done=*/false);
  }
  return false;
}

std::optional<Transaction> TransactionDriver::DriveHere(const std::string& gid,
                                                        MonoTime leased_until,
                                                        std::optional<Transaction> as_stored) {
  {
    MutexLock lock(mu_);
    if (stopping_) return std::nullopt;  // the lease runs out; whoever runs next drives it
    if (running_.count(gid) || queued_.count(gid)) {
      rerun_.insert(gid);  // cannot happen for a gid just created; the worker's turn otherwise
      return std::nullopt;
    }
    running_.insert(gid);
    ++running_here_;
  }
  Transaction left;
  const bool driven = DriveLeased(gid, leased_until, std::move(as_stored), &left);
  DoneHere(gid);
  if (!driven) return std::nullopt;
  return left;
}

void TransactionDriver::DoneHere(const std::string& gid) {
  bool again = false;
  {
    MutexLock lock(mu_);
    running_.erase(gid);
    --running_here_;
    again = rerun_.erase(gid) > 0;
  }
  if (again) Enqueue(gid);
}

void TransactionDriver::PollLoop() {
  MutexLock lock(mu_);
  bool store_was_down = false;  // the last claim failed
  while (!stopping_) {
    ResumeInterrupted(clock_.Now());
    // Claim only what idle workers can start now: a claimed transaction that waits in the queue
    // longer than its lease could be claimed by another coordinator as well.
    // Drives on callers' threads (DriveHere) take no worker.
    int capacity = std::min(
        options_.claim_batch,
        options_.workers - static_cast<int>(queue_.size() + running_.size() - running_here_));
    if (capacity > 0) {
      lock.Unlock();
      const TimePoint now = clock_.Now();
      const MonoTime asked = clock_.Monotonic();
      auto claimed = store_.ClaimDue(options_.owner, now, options_.lease, capacity);
      if (claimed.ok()) {
        for (const std::string& gid : *claimed) Enqueue(gid, asked + options_.lease);
        if (store_was_down) {
          // The store answers again: drives cut short by its outage resume now, not after the
          // backoff their failed tries grew to meanwhile.
          lock.Lock();
          for (auto& [gid, r] : interrupted_) {
            if (r.due != TimePoint::max()) r.due = std::min(r.due, now);
          }
          lock.Unlock();
        }
        store_was_down = false;
      } else {
        store_was_down = true;
        if (observer_) observer_->OnDriveError("", claimed.status());
      }
      lock.Lock();
      claimed_last_time_ = claimed.ok() && !claimed->empty();
      if (claimed.ok() && static_cast<int>(claimed->size()) == capacity) continue;  // more due
    }
    poll_cv_.wait_for(lock.native(), options_.poll_interval);
  }
}

Status TransactionDriver::DriveNow(const std::string& gid) {
  const MonoTime now = clock_.Monotonic();
  auto leased = store_.TryLease(gid, options_.owner, options_.lease);
  if (!leased.ok()) return leased.status();
  if (!*leased) {
    auto tx = store_.Load(gid, /*with_log=*/false);
    if (tx.ok() && IsFinal(tx->status)) return Status::Ok();
    return Status::Conflict("transaction " + gid + " is leased by another coordinator");
  }
  return Drive(gid, now + options_.lease, std::nullopt, nullptr);
}

Result<Transaction> TransactionDriver::CheckBackNow(const std::string& gid) {
  {
    MutexLock lock(mu_);
    if (stopping_) return Status::Unavailable("shutting down");
    if (running_.count(gid) || queued_.count(gid)) {
      return Status::Conflict("transaction " + gid + " is being driven now; try again");
    }
    running_.insert(gid);
    ++running_here_;
  }
  Result<Transaction> out = [&]() -> Result<Transaction> {
    const MonoTime now = clock_.Monotonic();
    auto leased = store_.TryLease(gid, options_.owner, options_.lease);
    if (!leased.ok()) return leased.status();
    if (!*leased) {
      return Status::Conflict("another coordinator is driving transaction " + gid +
                              " now; try again");
    }
    auto tx = store_.Load(gid, /*with_log=*/false);
    if (!tx.ok()) {
      Interrupted(gid, /*done=*/false);  // leased and not driven: resumed after the backoff
      return tx.status();
    }
    Processor* processor = processors_.Find(tx->mode);
    Status s = Status::Ok();
    if (processor != nullptr) {
      Context ctx(*this, now + options_.lease);
      try {
        s = processor->CheckBackNow(*tx, ctx);
      } catch (const std::exception& e) {  // a last guard, as in DriveLeased
        s = Status::Internal(e.what());
      }
    }
    // The lease back; a scheduled check-back keeps its time (a drive that waits set its own).
    if (!IsFinal(tx->status)) store_.Reschedule(gid, options_.owner, tx->next_attempt_at);
    if (!s.ok()) return s;
    return store_.Load(gid, /*with_log=*/false);
  }();
  DoneHere(gid);
  return out;
}

void TransactionDriver::Interrupted(const std::string& gid, bool done) {
  MutexLock lock(mu_);
  if (done) {
    interrupted_.erase(gid);
    return;
  }
  Resume& r = interrupted_[gid];
  ++r.tries;
  r.due = clock_.Now() + options_.retry.Backoff(r.tries, random_.Random01());
}

void TransactionDriver::ResumeInterrupted(TimePoint now) {
  std::vector<std::string> due;
  for (auto& [gid, r] : interrupted_) {
    if (r.due > now) continue;
    due.push_back(gid);
    r.due = TimePoint::max();  // until this drive is interrupted again, or ends
  }
  if (due.empty()) return;
  MutexUnlock unlocked(mu_);
  for (const std::string& gid : due) Enqueue(gid);  // the lease is taken again by the worker
}

Status TransactionDriver::Drive(const std::string& gid, MonoTime lease_known_until,
                                std::optional<Transaction> as_stored, Transaction* left) {
  Status s;
  // A Conflict means another actor (a client's abort, another coordinator) moved the
  // transaction under us: reload and carry on from what is stored.
  for (int round = 0; round < 4; ++round) {
    Result<Transaction> tx = Status::Internal("not loaded");
    if (round == 0 && as_stored) {
      tx = std::move(*as_stored);
    } else {
      tx = store_.Load(gid, /*with_log=*/false);
    }
    if (!tx.ok()) {
      s = tx.status();
      if (s.code() == Status::Code::kNotFound) {  // unknown to the store: nothing to resume
        if (observer_) observer_->OnDriveError(gid, s);
        Interrupted(gid, /*done=*/true);
        return s;
      }
      break;
    }
    if (IsFinal(tx->status)) {
      Interrupted(gid, /*done=*/true);
      NotifyFinal(*tx);
      if (left != nullptr) *left = std::move(*tx);
      return Status::Ok();
    }
    Processor* processor = processors_.Find(tx->mode);
    if (processor == nullptr) {
      s = Status::Internal("no processor for mode " + std::string(ModeName(tx->mode)));
      break;
    }
    Context ctx(*this, lease_known_until);
    s = processor->Drive(*tx, ctx);
    if (s.ok()) {
      // Recorded everything (with a transition, or before waiting).
      Interrupted(gid, /*done=*/true);
      if (left != nullptr) *left = std::move(*tx);
      return s;
    }
    // Another coordinator holds it now: stop at once, write nothing more.
    if (s.code() == Status::Code::kLeaseLost) break;
    // Cut short: the calls it made are still recorded (and that write may find the lease gone).
    if (Status f = ctx.Flush(gid); f.code() == Status::Code::kLeaseLost) {
      s = f;
      break;
    }
    if (s.code() != Status::Code::kConflict) break;
  }
  if (observer_) observer_->OnDriveError(gid, s);
  if (s.code() == Status::Code::kLeaseLost) {
    Interrupted(gid, /*done=*/true);
    return s;
  }
  // Hand it back to the poller after a pause rather than hold the lease until it expires. When
  // even that fails (the store is down), it is resumed here once the store answers again.
  TimePoint now = clock_.Now();
  Status released =
      store_.Reschedule(gid, options_.owner, now + options_.retry.Backoff(1, random_.Random01()));
  Interrupted(gid, /*done=*/released.ok());
  return s;
}

void TransactionDriver::NotifyFinal(const Transaction& tx) {
  MutexLock lock(final_mu_);
  auto it = watches_.find(tx.gid);
  if (it == watches_.end()) return;
  it->second->final = tx;
  it->second->cv.notify_all();
}

TransactionDriver::FinalWait::~FinalWait() {
  if (driver_ == nullptr) return;
  MutexLock lock(driver_->final_mu_);
  if (--watch_->waiters == 0) driver_->watches_.erase(gid_);
}

std::unique_ptr<TransactionDriver::FinalWait> TransactionDriver::Watch(const std::string& gid) {
  MutexLock lock(final_mu_);
  auto& slot = watches_[gid];
  if (!slot) slot = std::make_shared<FinalWatch>();
  ++slot->waiters;
  auto wait = std::unique_ptr<FinalWait>(new FinalWait());
  wait->driver_ = this;
  wait->gid_ = gid;
  wait->watch_ = slot;
  return wait;
}

Result<Transaction> TransactionDriver::WaitFinal(const std::string& gid, TimePoint until) {
  // Watched before the first load: a change after it is seen, one before it is loaded.
  std::unique_ptr<FinalWait> wait = Watch(gid);
  return WaitFinal(*wait, until, /*load_first=*/true);
}

Result<Transaction> TransactionDriver::WaitFinal(FinalWait& wait, TimePoint until,
                                                 bool load_first) {
  const std::shared_ptr<FinalWatch>& watch = wait.watch_;
  Result<Transaction> tx = Status::Internal("not loaded");
  bool load = load_first;
  while (true) {
    if (load) {
      tx = store_.Load(wait.gid_, /*with_log=*/false);
      if (!tx.ok()) break;
      if (IsFinal(tx->status)) break;
    }
    load = true;
    TimePoint now = clock_.Now();
    if (now >= until) {
      if (!tx.ok()) tx = store_.Load(wait.gid_, /*with_log=*/false);
      break;
    }
    // Woken when this coordinator finishes it, with the final state it stored; the timeout
    // catches another coordinator finishing it.
    auto timeout = std::min<std::chrono::nanoseconds>(until - now, options_.final_poll);
    MutexLock lock(final_mu_);
    if (watch->cv.wait_for(lock.native(), timeout, [&] { return watch->final.has_value(); })) {
      tx = *watch->final;
      break;
    }
  }
  return tx;
}

}  // namespace treaty::core
