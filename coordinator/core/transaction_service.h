#pragma once

// The use cases behind the REST API, shared by every transport (HTTP today, treatyctl later):
// begin, register a branch, submit, abort, read, list, retry now, wait for the outcome.
// Input arrives already parsed and shape-checked by the transport; the mode's Processor checks
// it against the mode's rules (Plan, CheckBranch, OnSubmit), and this layer checks what needs the
// store (gid reuse, state). Nothing here depends on which mode a transaction is: that is the
// processors' alone. Returns Status codes the transport maps to HTTP: InvalidArgument 400,
// NotFound 404, Conflict 409.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/begin_request.h"
#include "coordinator/core/environment.h"
#include "coordinator/core/store.h"
#include "coordinator/core/transaction.h"
#include "coordinator/core/transaction_driver.h"

namespace treaty::core {

struct BeginOutcome {
  Transaction tx;
  bool created = false;  // false: the same request was submitted before under this gid
  // Set when the request asked to wait and this call created the transaction.
  std::shared_ptr<TransactionDriver::FinalWait> watch;
};

struct ForceOutcome {
  Transaction tx;                    // as it stands after (with its log), or before (dry run)
  std::vector<BranchOp> not_called;  // the ops still pending, which will not be called
};

// Who asks for an abort. A msg transaction's own service knows whether its local transaction
// rolled back; anyone else (an operator at the console or treatyctl) does not, so their abort of
// a half message is a check-back first.
enum class AbortBy { kService, kOther };

class TransactionService {
 public:
  // `default_timeout`: the first phase's deadline; `check_back`: how long a half message waits
  // for submit or abort before Treaty asks the service.
  TransactionService(TransactionStore& store, TransactionDriver& driver, Clock& clock,
                     IdGenerator& ids, CrashPoints& crash, Duration default_timeout,
                     Duration check_back = std::chrono::seconds(5));

  // Starts a transaction. The same gid with the same request gives the stored transaction
  // (created = false); with a different request, Conflict.
  Result<BeginOutcome> Begin(const BeginRequest& request);

  // Registers a branch on a begun, not yet submitted transaction.
  Status AddBranch(const std::string& gid, const BranchSpec& branch);

  // Submits a begun transaction. Submitting again is harmless; Conflict once it was aborted, or
  // when no branch is registered. With `wait` (the caller waits for the outcome next) it is
  // driven on the calling thread, as far as it goes now, and returned as that drive left it.
  Result<Transaction> Submit(const std::string& gid, bool wait = false);

  // Aborts a transaction that has no decision yet. Harmless when it is aborting or aborted
  // already; Conflict once commit was decided. When its processor asks for a check first
  // (msg, not by its service), the service is asked now: the abort happens only if it says its
  // local transaction rolled back; Conflict, with nothing changed, if it committed (the messages
  // are then delivered) or cannot be reached.
  Result<Transaction> Abort(const std::string& gid, AbortBy by = AbortBy::kOther);

  // The transaction with its ops and decision log.
  Result<Transaction> Get(const std::string& gid);

  Result<ListPage> List(const ListFilter& filter);
  Result<StatusCounts> CountByStatus();

  // Makes an unfinished transaction due now, skipping its backoff; Conflict when it is final.
  Result<Transaction> RetryNow(const std::string& gid);

  // An operator ends `gid` as `to` (committed or aborted) now, without the calls still due
  // (force-finish): the decision log records `actor` and `reason`. Conflict, with nothing
  // changed, where the mode says the move could contradict what was decided or done
  // (Processor::CanForce), or when the transaction moved on meanwhile. With `dry_run`, checks
  // and answers what would happen without changing anything.
  Result<ForceOutcome> Force(const std::string& gid, TxStatus to, const std::string& reason,
                             const std::string& actor, bool dry_run);

  // The transaction once final, or as it stands at `until`.
  Result<Transaction> WaitFinal(const std::string& gid, TimePoint until);
  // The same for a transaction just begun; with its watch, without reading the store first.
  Result<Transaction> WaitFinal(const BeginOutcome& begun, TimePoint until);

 private:
  // The processor of `mode`, or InvalidArgument naming the field "mode".
  Result<const Processor*> ProcessorOf(Mode mode) const;
  // Makes a begin record that may have ridden unforced (Transaction::begin_may_ride) durable,
  // before an answer that says the transaction was accepted.
  Status MakeBeginDurable(const std::string& gid);

  TransactionStore& store_;
  TransactionDriver& driver_;
  Clock& clock_;
  IdGenerator& ids_;
  CrashPoints& crash_;
  const Duration default_timeout_;
  const Duration check_back_;
};

}  // namespace treaty::core
