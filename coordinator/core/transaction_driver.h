#pragma once

// TransactionDriver runs transactions forward: a pool of workers drives each transaction with its
// mode's Processor, and a poller claims due work from the store (retries whose backoff ended,
// and anything a crashed coordinator left behind) under a lease, so several coordinators can
// share one store and any survivor finishes what another started.
//
// Thread-safe. Start() before Enqueue(); Stop() (or the destructor) joins every thread.

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"
#include "coordinator/core/branch_transport.h"
#include "coordinator/core/environment.h"
#include "coordinator/core/message_sink.h"
#include "coordinator/core/processor.h"
#include "coordinator/core/processor_registry.h"
#include "coordinator/core/retry_policy.h"
#include "coordinator/core/store.h"

namespace treaty::core {

struct DriverOptions {
  // This coordinator's name in leases, unique per running process: a restart under the same
  // node id takes a new one (treatyd: "<node_id>#<random>"), so that a predecessor still alive
  // (paused, not yet killed) fails its fence instead of writing under its successor's leases.
  std::string owner = "treatyd";
  // The node this coordinator runs as: Start() frees the leases of its earlier runs (owners
  // `node_id` or "`node_id`#..."). Empty: `owner`.
  std::string node_id;
  int workers = 8;
  Duration poll_interval = std::chrono::milliseconds(100);
  // How long a claim keeps other coordinators away, by the store's clock. Every write of a
  // drive is fenced on it and renews it; no call is sent without its whole time budget left.
  Duration lease = std::chrono::seconds(30);
  Duration branch_call_timeout = std::chrono::seconds(3);
  // The longest one delivery to the message sink may take (the Kafka producer's delivery
  // timeout and its margin); at most half the lease.
  Duration publish_timeout = std::chrono::seconds(10);
  // Transactions waiting for a worker, at most: Admit() refuses new work beyond it (the API
  // answers 503 with Retry-After). Only the first `keep_stored` of them keep a copy of their
  // stored state; the others are loaded when their turn comes, so memory stays bounded.
  int max_queued = 2000;
  int keep_stored = 64;
  RetryPolicy retry;
  int claim_batch = 64;
  // How often a client waiting for an outcome looks at the store, in case another coordinator
  // finished the transaction (this one's own drives wake it at once).
  Duration final_poll = std::chrono::milliseconds(500);
};

// Observes what the driver (and the service) does, for logs and metrics. Calls come from worker
// and request threads; implementations are thread-safe and quick.
class DriverObserver {
 public:
  virtual ~DriverObserver() = default;
  virtual void OnStarted(const Transaction&) {}
  virtual void OnTransition(const Transaction& tx, TxStatus from, const std::string& reason) = 0;
  virtual void OnDriveError(const std::string& gid, const Status& status) = 0;
  // One participant call (or, for "publish", one message) and what came of it.
  virtual void OnCall(const Transaction&, const BranchOp&, const BranchReply&) {}
  // The transaction waits for a retry after its backoff.
  virtual void OnRetryScheduled(const Transaction&) {}
  // New work was refused: too many transactions wait for a worker.
  virtual void OnRejected() {}
};

class TransactionDriver {
  struct FinalWatch;  // below

 public:
  // Every reference must outlive the driver, and so must the processors `processors` names
  // (one per mode served). `messages` may be null: transactional messages to Kafka then stay
  // undelivered.
  TransactionDriver(DriverOptions options, TransactionStore& store, BranchTransport& transport,
                    Clock& clock, IdGenerator& random, CrashPoints& crash,
                    ProcessorRegistry processors, DriverObserver* observer = nullptr,
                    MessageSink* messages = nullptr);
  ~TransactionDriver();

  // Frees the leases left by earlier runs of this node, then starts the workers and the poller.
  Status Start();
  void Stop();

  // Drives `gid` soon on this coordinator, which must hold its lease (it just created it).
  // `leased_until`, when known, spares the worker taking the lease again if it is still fresh;
  // `as_stored`, the transaction exactly as the store holds it (just created), spares loading
  // it. Both are only used while that lease is fresh.
  void Enqueue(const std::string& gid, std::optional<MonoTime> leased_until = std::nullopt,
               std::optional<Transaction> as_stored = std::nullopt);

  // Drives `gid` on the calling thread, now, as a worker would drive it after Enqueue(): for a
  // caller that waits for the outcome anyway (no hand-over to a worker and back). If `gid` is
  // queued or being driven already, it is driven again after that instead. Returns the
  // transaction as the drive left it (final, or waiting for a retry), if it was driven.
  std::optional<Transaction> DriveHere(const std::string& gid, MonoTime leased_until,
                                       std::optional<Transaction> as_stored);

  // Drives `gid` soon if this coordinator can lease it now (after a client changed it); if
  // another coordinator holds it, that one drives it.
  void Kick(const std::string& gid);

  // As Kick(), but driven on the calling thread (DriveHere); from `as_stored` when given: the
  // transaction exactly as the caller just stored it (nothing else could have changed it).
  std::optional<Transaction> KickHere(const std::string& gid, std::optional<Transaction> as_stored);

  // Makes the poller look for due work now (after a transaction was made due).
  void WakePoller();

  // Whether new work may be accepted now: false while `max_queued` transactions wait for a
  // worker (overload, e.g. slow participants). Counted by the observer (OnRejected).
  bool Admit();

  // Makes the check its processor asks for before an operator's abort (Processor::
  // CheckBackNow) on the calling thread, under this coordinator's lease; Conflict when another
  // coordinator or drive holds the transaction now. Returns it as the check left it.
  Result<Transaction> CheckBackNow(const std::string& gid);

  // Takes the lease and drives `gid` on the calling thread until it is final or waits; Conflict
  // when another coordinator holds it. For tests and tools.
  Status DriveNow(const std::string& gid);

  // The transaction once it is final, or as it stands at `until`.
  Result<Transaction> WaitFinal(const std::string& gid, TimePoint until);

  // A registration to learn when one transaction becomes final; unregisters when destroyed.
  // Taken before the transaction is enqueued, it cannot miss the change.
  class FinalWait {
   public:
    ~FinalWait();
    FinalWait(const FinalWait&) = delete;
    FinalWait& operator=(const FinalWait&) = delete;

   private:
    friend class TransactionDriver;
    FinalWait() = default;
    TransactionDriver* driver_ = nullptr;
    std::string gid_;
    std::shared_ptr<FinalWatch> watch_;
  };
  std::unique_ptr<FinalWait> Watch(const std::string& gid);

  // As WaitFinal(gid, until), on a registration from Watch(). Without `load_first` (the caller
  // knows it is not final yet: it just created it) nothing is read from the store unless the
  // wait times out; the final state comes from the drive that stored it.
  Result<Transaction> WaitFinal(FinalWait& wait, TimePoint until, bool load_first);

  // The one way a transaction's status changes, for processors (DriveContext::Transition) and
  // clients (an abort, a msg submit) alike: makes tx.status -> `to` durable with `ops` and a
  // decision-log row saying `reason` iff the store still has tx.status (fenced on `fence` when
  // given, as every write of a drive is; a client's change is not fenced), then updates `tx`,
  // tells the observer, wakes whoever waits for `tx` to be final, and reaches the
  // "after_decision" crash point when the change was a decision. Conflict when another actor
  // moved the transaction first; nothing else happens then.
  Status ApplyTransition(Transaction& tx, TxStatus to, const std::string& reason,
                         const std::vector<BranchOp>& ops = {}, const Fence* fence = nullptr);

  const Processor* ProcessorFor(Mode mode) const { return processors_.Find(mode); }
  const ProcessorRegistry& processors() const { return processors_; }
  DriverObserver* observer() const { return observer_; }
  const DriverOptions& options() const { return options_; }

 private:
  class Context;

  void WorkerLoop();
  void PollLoop();
  // DriveNow, starting from `as_stored` instead of a load when given.
  // `left`, when given, receives the transaction as a successful drive left it.
  // `lease_known_until`: as for Context (this coordinator's monotonic clock).
  Status Drive(const std::string& gid, MonoTime lease_known_until,
               std::optional<Transaction> as_stored, Transaction* left);
  // Drive() under this coordinator's lease: the one known to be fresh, or one taken now. True
  // when it was driven without an error.
  bool DriveLeased(const std::string& gid, std::optional<MonoTime> leased_until,
                   std::optional<Transaction> as_stored, Transaction* left);
  // Ends a drive or check made on the calling thread (DriveHere, CheckBackNow): `gid` is no
  // longer running here, and is driven again if it was enqueued meanwhile.
  void DoneHere(const std::string& gid);
  // Wakes the WaitFinal() calls on tx.gid with `tx`, which is final and stored as it is.
  void NotifyFinal(const Transaction& tx);
  // A drive of `gid` was cut short and its lease could not be given back (the store was
  // unreachable): it is driven again here after the retry backoff, not after the lease runs
  // out. `done`: it was given back or driven to a wait, so nothing is left to resume.
  void Interrupted(const std::string& gid, bool done);
  // Enqueues the interrupted drives whose backoff has passed. Called with mu_ held (released
  // meanwhile).
  void ResumeInterrupted(TimePoint now) REQUIRES(mu_);

  const DriverOptions options_;
  TransactionStore& store_;
  BranchTransport& transport_;
  Clock& clock_;
  IdGenerator& random_;
  CrashPoints& crash_;
  const ProcessorRegistry processors_;
  DriverObserver* observer_;
  MessageSink* messages_;

  Mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable poll_cv_;
  std::deque<std::string> queue_ GUARDED_BY(mu_);
  std::set<std::string> queued_ GUARDED_BY(mu_);   // in queue_
  std::set<std::string> running_ GUARDED_BY(mu_);  // being driven now
  size_t running_here_ GUARDED_BY(mu_) = 0;        // of which by DriveHere()
  std::set<std::string> rerun_ GUARDED_BY(mu_);    // enqueued again while running
  // What Enqueue() was told of a queued transaction (its lease, its stored state), if anything.
  struct Known {
    std::optional<MonoTime> leased_until;
    std::optional<Transaction> as_stored;
  };
  std::map<std::string, Known> known_ GUARDED_BY(mu_);  // of queued transactions
  bool stopping_ GUARDED_BY(mu_) = false;
  // The last claim found due work: more may be waiting, so a worker that falls idle asks the
  // poller to claim again rather than leaving it to the next poll interval (a backlog after a
  // restart drains at the workers' pace, not the poll's).
  bool claimed_last_time_ GUARDED_BY(mu_) = false;
  // Interrupted drives to resume (Interrupted()): when, and after how many tries.
  struct Resume {
    TimePoint due;
    int tries = 0;
  };
  std::map<std::string, Resume> interrupted_ GUARDED_BY(mu_);
  std::vector<std::thread> threads_;

  // The transactions someone waits on, so that a change wakes only its own waiters.
  struct FinalWatch {
    // Both guarded by TransactionDriver::final_mu_ (not annotated: in a nested struct, Clang
    // would read final_mu_ as the struct's own member).
    int waiters = 0;
    std::optional<Transaction> final;  // set once it is final
    std::condition_variable cv;
  };
  Mutex final_mu_;
  std::map<std::string, std::shared_ptr<FinalWatch>> watches_ GUARDED_BY(final_mu_);
};

}  // namespace treaty::core
