#include "coordinator/core/transaction_service.h"

#include <algorithm>

#include "coordinator/core/state_machine.h"

namespace treaty::core {

TransactionService::TransactionService(TransactionStore& store, TransactionDriver& driver,
                                       Clock& clock, IdGenerator& ids, CrashPoints& crash,
                                       Duration default_timeout, Duration check_back)
    : store_(store),
      driver_(driver),
      clock_(clock),
      ids_(ids),
      crash_(crash),
      default_timeout_(default_timeout),
      check_back_(check_back) {}

Result<const Processor*> TransactionService::ProcessorOf(Mode mode) const {
  const Processor* p = driver_.processors().Find(mode);
  if (p == nullptr) {
    return Status::InvalidField("mode", "mode " + std::string(ModeName(mode)) + " is not served");
  }
  return p;
}

Result<BeginOutcome> TransactionService::Begin(const BeginRequest& req) {
  auto processor = ProcessorOf(req.mode);
  if (!processor.ok()) return processor.status();
  TimePoint now = clock_.Now();
  Transaction tx;
  tx.gid = req.gid.value_or(ids_.NewGid());
  if (!ValidId(tx.gid, kMaxGidLength)) {
    return Status::InvalidField("gid", "gid must be 1 to " + std::to_string(kMaxGidLength) +
                                           " characters of A-Z a-z 0-9 . _ : -");
  }
  tx.mode = req.mode;
  tx.created_at = tx.updated_at = now;
  tx.definition = req.definition;
  tx.request_json = req.request_json;
  tx.request_digest = req.request_digest;
  tx.context = NewCallContext(ids_, req.traceparent, req.tracestate, req.propagated_headers);
  tx.context.secret.insert(req.secret_headers.begin(), req.secret_headers.end());
  const PlanDefaults defaults{.timeout = default_timeout_, .check_back = check_back_};
  if (Status s = (*processor)->Plan(req, defaults, tx); !s.ok()) return s;

  // Only a transaction driven at once is leased to its creator; a begun one (or a half message
  // waiting for its check-back) must be claimable by any coordinator when it falls due.
  // Overloaded (too much waiting for a worker), new work is refused before anything is stored:
  // accepted work is never dropped, and memory stays bounded.
  if (tx.submitted && !req.wait && !driver_.Admit()) {
    return Status::ResourceExhausted("too many transactions are waiting to be driven; retry later");
  }
  const Duration lease = tx.submitted ? driver_.options().lease : Duration(0);
  // Until when the lease is known to run, by this coordinator's monotonic clock (taken before
  // the store's own clock starts it).
  const MonoTime lease_until = clock_.Monotonic() + lease;
  auto created = store_.Create(tx, driver_.options().owner, lease);
  if (!created.ok()) return created.status();
  if (!created->created) {
    if (created->existing.request_digest != req.request_digest) {
      return Status::Conflict("gid " + tx.gid + " is in use by a different request");
    }
    // The same request again: perhaps because the answer to the first was lost after it was
    // stored (the store failed mid-commit). Its lease may be this coordinator's, unknown to the
    // driver: drive it now rather than when that lease runs out.
    const Transaction& existing = created->existing;
    if (existing.submitted && !IsFinal(existing.status)) driver_.Kick(existing.gid);
    return BeginOutcome{std::move(created->existing), false};
  }
  crash_.Reach("after_begin");
  if (DriverObserver* o = driver_.observer()) o->OnStarted(tx);
  BeginOutcome outcome{tx, true, nullptr};
  if (req.wait) outcome.watch = driver_.Watch(tx.gid);
  if (tx.submitted) {
    std::string gid = tx.gid;  // not tx.gid: the argument moved from tx may be built first
    // Handed over as created: the drive starts without reading it back. A caller that waits
    // for the outcome drives it itself.
    if (req.wait) {
      driver_.DriveHere(gid, lease_until, std::move(tx));
    } else {
      driver_.Enqueue(gid, lease_until, std::move(tx));
    }
  }
  return outcome;
}

Status TransactionService::AddBranch(const std::string& gid, const BranchSpec& branch) {
  auto tx = store_.Load(gid, false);
  if (!tx.ok()) return tx.status();
  if (tx->status != TxStatus::kActive || tx->submitted) {
    return Status::Conflict("transaction " + gid + " is " +
                            std::string(tx->submitted && tx->status == TxStatus::kActive
                                            ? "submitted"
                                            : StatusName(tx->status)) +
                            ": no more branches can join");
  }
  for (const BranchOp& o : tx->ops) {
    if (o.branch_id == branch.id) {
      return Status::Conflict("branch " + branch.id + " is registered already");
    }
  }
  auto processor = ProcessorOf(tx->mode);
  if (!processor.ok()) return processor.status();
  std::vector<BranchOp> ops;
  Status s = (*processor)
                 ->CheckBranch(branch, static_cast<int>(tx->BranchIds().size()),
                               /*registered=*/true, &ops);
  if (!s.ok()) return s;
  return store_.AddBranch(gid, ops);
}

Result<Transaction> TransactionService::Submit(const std::string& gid, bool wait) {
  auto tx = store_.Load(gid, false);
  if (!tx.ok()) return tx.status();
  // After the change below: drive it (here when the caller waits, from the state just stored),
  // then answer.
  // `changed`: the transaction as now stored, if known exactly.
  auto drive = [&](Transaction seen, std::optional<Transaction> changed) -> Result<Transaction> {
    if (!wait) {
      driver_.Kick(gid);
      return store_.Load(gid, false);
    }
    std::optional<Transaction> left = driver_.KickHere(gid, std::move(changed));
    return left ? std::move(*left) : seen;
  };
  auto processor = ProcessorOf(tx->mode);
  if (!processor.ok()) return processor.status();
  const SubmitStep step = (*processor)->OnSubmit(*tx);
  switch (step.kind) {
    case SubmitStep::Kind::kNone:
      return tx;
    case SubmitStep::Kind::kRefuse:
      return Status::Conflict("transaction " + gid + " " + step.why);
    case SubmitStep::Kind::kDecide: {
      Status s = driver_.ApplyTransition(*tx, step.to, step.why);
      if (s.code() == Status::Code::kConflict) {  // moved meanwhile: drive what is stored
        wait = false;
        return drive(*tx, std::nullopt);
      }
      if (!s.ok()) return s;
      // What is stored now, exactly: nothing but the status changed since the load.
      return drive(*tx, *tx);
    }
    case SubmitStep::Kind::kMarkSubmitted:
      break;
  }
  const TimePoint now = clock_.Now();
  if (!wait && !driver_.Admit()) {
    return Status::ResourceExhausted("too many transactions are waiting to be driven; retry later");
  }
  Status s = store_.MarkSubmitted(gid, now);
  if (!s.ok() && s.code() != Status::Code::kConflict) return s;
  if (!s.ok()) wait = false;  // submitted meanwhile: drive what is stored
  tx->submitted = true;
  tx->next_attempt_at = now;
  // Read back by the drive: a branch registered after the load above is part of it.
  return drive(*tx, std::nullopt);
}

Result<Transaction> TransactionService::Abort(const std::string& gid, AbortBy by) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto tx = store_.Load(gid, false);
    if (!tx.ok()) return tx.status();
    const Processor* p = driver_.ProcessorFor(tx->mode);
    if (by == AbortBy::kOther && p != nullptr && p->ChecksBeforeAbort(*tx)) {
      return driver_.CheckBackNow(gid);
    }
    if (tx->status == TxStatus::kAborting || tx->status == TxStatus::kAborted) return tx;
    if (FindTransition(tx->mode, tx->status, TxStatus::kAborting) == nullptr) {
      return Status::Conflict("transaction " + gid + " is " + std::string(StatusName(tx->status)) +
                              ": commit was decided, it cannot be aborted");
    }
    Status s = driver_.ApplyTransition(*tx, TxStatus::kAborting, "aborted by the client");
    if (s.code() == Status::Code::kConflict) continue;  // moved meanwhile: look again
    if (!s.ok()) return s;
    driver_.Kick(gid);
    return store_.Load(gid, false);
  }
  return Status::Conflict("transaction " + gid + " keeps changing; try again");
}

Result<Transaction> TransactionService::Get(const std::string& gid) {
  return store_.Load(gid, /*with_log=*/true);
}

Result<std::vector<Transaction>> TransactionService::List(const ListFilter& filter) {
  return store_.List(filter);
}

Result<std::map<TxStatus, int64_t>> TransactionService::CountByStatus() {
  return store_.CountByStatus();
}

Result<Transaction> TransactionService::RetryNow(const std::string& gid) {
  auto tx = store_.Load(gid, false);
  if (!tx.ok()) return tx.status();
  if (IsFinal(tx->status)) {
    return Status::Conflict("transaction " + gid + " is " + std::string(StatusName(tx->status)) +
                            ": nothing to retry");
  }
  Status s = store_.MakeDue(gid, clock_.Now());
  if (!s.ok()) return s;
  driver_.WakePoller();
  return tx;
}

Result<ForceOutcome> TransactionService::Force(const std::string& gid, TxStatus to,
                                               const std::string& reason, const std::string& actor,
                                               bool dry_run) {
  if (to != TxStatus::kCommitted && to != TxStatus::kAborted) {
    return Status::InvalidField("status", "must be committed or aborted");
  }
  if (reason.empty()) return Status::InvalidField("reason", "is required: say why");
  auto tx = store_.Load(gid, false);
  if (!tx.ok()) return tx.status();
  auto processor = ProcessorOf(tx->mode);
  if (!processor.ok()) return processor.status();
  if (Status s = (*processor)->CanForce(*tx, to); !s.ok()) {
    return Status::Conflict("transaction " + gid + " cannot be forced " +
                            std::string(StatusName(to)) + ": " + s.message());
  }
  // What would still be called: the ops pending in this phase, and in the one that ends as `to`.
  std::vector<std::string> due = (*processor)->OpsDueIn(tx->status);
  for (const std::string& op :
       (*processor)
           ->OpsDueIn(to == TxStatus::kCommitted ? TxStatus::kCommitting : TxStatus::kAborting)) {
    due.push_back(op);
  }
  ForceOutcome out;
  for (const BranchOp& op : tx->ops) {
    if (op.status == OpStatus::kPending && std::find(due.begin(), due.end(), op.op) != due.end()) {
      out.not_called.push_back(op);
    }
  }
  if (!dry_run) {
    const std::string why =
        "forced " + std::string(StatusName(to)) + " by " + actor + ": " + reason;
    Status s = store_.Force(gid, tx->status, to, why, actor, clock_.Now());
    if (!s.ok()) return s;
    auto after = store_.Load(gid, /*with_log=*/true);
    if (!after.ok()) return after.status();
    tx = std::move(after);
  }
  out.tx = std::move(*tx);
  return out;
}

Result<Transaction> TransactionService::WaitFinal(const std::string& gid, TimePoint until) {
  return driver_.WaitFinal(gid, until);
}

Result<Transaction> TransactionService::WaitFinal(const BeginOutcome& begun, TimePoint until) {
  if (!begun.watch) return driver_.WaitFinal(begun.tx.gid, until);
  return driver_.WaitFinal(*begun.watch, until, /*load_first=*/false);
}

}  // namespace treaty::core
