#include "coordinator/core/transaction_service.h"

#include <algorithm>
#include <set>

#include "coordinator/core/saga_processor.h"
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

Status TransactionService::CheckBranch(const Transaction* tx, const BranchSpec& b, Mode mode,
                                       int position, bool registered,
                                       std::vector<BranchOp>* ops) const {
  const Processor* p = driver_.ProcessorFor(mode);
  if (p == nullptr) {
    return Status::InvalidArgument("mode " + std::string(ModeName(mode)) + " is not served yet");
  }
  if (!ValidId(b.id, kMaxBranchIdLength)) {
    return Status::InvalidArgument("branch id \"" + b.id + "\" must be 1 to " +
                                   std::to_string(kMaxBranchIdLength) +
                                   " characters of A-Z a-z 0-9 . _ : -");
  }
  if (tx != nullptr) {
    for (const BranchOp& o : tx->ops) {
      if (o.branch_id == b.id) return Status::Conflict("branch " + b.id + " is registered already");
    }
  }
  const std::vector<std::string>& required = p->RequiredOps(registered);
  if (!b.after.empty() && mode != Mode::kSaga) {
    return Status::InvalidArgument("branch " + b.id + ": after applies to sagas only");
  }
  for (const std::string& op : required) {
    auto it = b.urls.find(op);
    if (it == b.urls.end() || it->second.empty()) {
      return Status::InvalidArgument("branch " + b.id + " has no " + op + " URL");
    }
  }
  for (const auto& [op, url] : b.urls) {
    const auto& known = p->BranchOps();
    if (std::find(known.begin(), known.end(), op) == known.end()) {
      return Status::InvalidArgument("branch " + b.id + ": " + op + " is not an op of " +
                                     std::string(ModeName(mode)));
    }
  }
  for (const std::string& op : p->BranchOps()) {
    auto it = b.urls.find(op);
    if (it == b.urls.end()) continue;
    ops->push_back(BranchOp{.branch_id = b.id,
                            .op = op,
                            .position = position,
                            .url = it->second,
                            .payload_json = b.payload_json,
                            .timeout = b.timeout,
                            .after = b.after});
  }
  return Status::Ok();
}

Result<BeginOutcome> TransactionService::Begin(const BeginRequest& req) {
  TimePoint now = clock_.Now();
  Transaction tx;
  tx.gid = req.gid.value_or(ids_.NewGid());
  if (!ValidId(tx.gid, kMaxGidLength)) {
    return Status::InvalidArgument("gid must be 1 to " + std::to_string(kMaxGidLength) +
                                   " characters of A-Z a-z 0-9 . _ : -");
  }
  tx.mode = req.mode;
  tx.status = InitialStatus(req.mode);
  tx.submitted = req.branches.has_value() && req.mode != Mode::kMsg;
  tx.sequential = req.sequential;
  tx.created_at = tx.updated_at = now;
  tx.deadline =
      now + req.timeout.value_or(req.mode == Mode::kMsg ? check_back_ : default_timeout_);
  tx.next_attempt_at = tx.submitted ? now : tx.deadline;
  tx.definition = req.definition;
  tx.request_json = req.request_json;
  tx.request_digest = req.request_digest;
  if (req.mode == Mode::kMsg) {
    if (req.query_url.empty()) return Status::InvalidArgument("a msg transaction needs a query URL");
    if (req.messages.empty() && (!req.branches || req.branches->empty())) {
      return Status::InvalidArgument("a msg transaction needs messages or branches");
    }
    int index = 0;
    for (const MessageSpec& m : req.messages) {
      tx.ops.push_back(BranchOp{.branch_id = "msg-" + std::to_string(index),
                                .op = "publish",
                                .position = 1000 + index,
                                .url = "kafka:" + m.topic,
                                .payload_json = m.value_json,
                                .message_key = m.key,
                                .message_headers = m.headers});
      ++index;
    }
    tx.ops.push_back(BranchOp{.branch_id = "query", .op = "query", .position = 2000,
                              .url = req.query_url});
  }
  if (req.branches && !(req.mode == Mode::kMsg && req.branches->empty())) {
    if (req.branches->empty()) return Status::InvalidArgument("branches must not be empty");
    std::set<std::string> ids;
    int position = 0;
    for (const BranchSpec& b : *req.branches) {
      if (!ids.insert(b.id).second) {
        return Status::InvalidArgument("branch id " + b.id + " appears twice");
      }
      Status s = CheckBranch(nullptr, b, req.mode, position++, /*registered=*/false, &tx.ops);
      if (!s.ok()) return s;
    }
    if (req.mode == Mode::kSaga) {
      std::vector<std::pair<std::string, std::vector<std::string>>> graph;
      for (const BranchSpec& b : *req.branches) graph.emplace_back(b.id, b.after);
      Status s = CheckSagaGraph(graph);
      if (!s.ok()) return s;
    }
  } else if (req.mode == Mode::kMsg) {
    // messages only
  } else if (req.mode == Mode::kSaga) {
    return Status::InvalidArgument("a saga is submitted whole: branches are required");
  } else if (driver_.ProcessorFor(req.mode) == nullptr) {
    return Status::InvalidArgument("mode " + std::string(ModeName(req.mode)) + " is not served yet");
  }

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
  std::vector<BranchOp> ops;
  Status s = CheckBranch(&*tx, branch, tx->mode, static_cast<int>(tx->BranchIds().size()),
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
  const TimePoint now = clock_.Now();
  if (tx->mode == Mode::kMsg) {
    if (tx->status == TxStatus::kPrepared) {
      const std::string reason = "submitted by the service";
      Status s = store_.Transition(gid, TxStatus::kPrepared, TxStatus::kCommitting, reason, now, {},
                                   /*fence=*/nullptr);
      if (!s.ok() && s.code() != Status::Code::kConflict) return s;
      crash_.Reach("after_decision");
      if (!s.ok()) {  // moved meanwhile: drive what is stored
        wait = false;
        return drive(*tx, std::nullopt);
      }
      // A msg transaction's messages are fixed at begin: this is exactly what is stored now.
      tx->status = TxStatus::kCommitting;
      tx->reason = reason;
      tx->updated_at = tx->next_attempt_at = now;
      return drive(*tx, *tx);
    }
    if (tx->status == TxStatus::kAborting || tx->status == TxStatus::kAborted) {
      return Status::Conflict("transaction " + gid + " is " + std::string(StatusName(tx->status)) +
                              ": it cannot be submitted");
    }
    return tx;
  }
  if (tx->status != TxStatus::kActive) {
    if (tx->status == TxStatus::kAborting || tx->status == TxStatus::kAborted) {
      return Status::Conflict("transaction " + gid + " is " + std::string(StatusName(tx->status)) +
                              ": it cannot be submitted");
    }
    return tx;  // submitted before and decided: harmless
  }
  if (tx->submitted) return tx;
  if (tx->ops.empty()) return Status::Conflict("transaction " + gid + " has no branches to submit");
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
    switch (tx->status) {
      case TxStatus::kAborting:
      case TxStatus::kAborted:
        return tx;
      case TxStatus::kCommitting:
      case TxStatus::kCommitted:
        return Status::Conflict("transaction " + gid + " is " +
                                std::string(StatusName(tx->status)) +
                                ": commit was decided, it cannot be aborted");
      case TxStatus::kActive:
      case TxStatus::kPrepared: {
        Status s = store_.Transition(gid, tx->status, TxStatus::kAborting, "aborted by the client",
                                     clock_.Now(), {}, /*fence=*/nullptr);
        if (s.code() == Status::Code::kConflict) continue;  // moved meanwhile: look again
        if (!s.ok()) return s;
        driver_.Kick(gid);
        return store_.Load(gid, false);
      }
    }
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

Result<Transaction> TransactionService::WaitFinal(const std::string& gid, TimePoint until) {
  return driver_.WaitFinal(gid, until);
}

Result<Transaction> TransactionService::WaitFinal(const BeginOutcome& begun, TimePoint until) {
  if (!begun.watch) return driver_.WaitFinal(begun.tx.gid, until);
  return driver_.WaitFinal(*begun.watch, until, /*load_first=*/false);
}

}  // namespace treaty::core
