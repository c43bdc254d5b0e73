#include "coordinator/store/pg_transaction_store.h"

#include <algorithm>
#include <pqxx/pqxx>

#include "common/batcher.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/pg_rows.h"
#include "coordinator/store/pg_statements.h"
#include "coordinator/store/pg_write_batches.h"

// The store is split by what its statements do: pg_write_batches.cc (Create, Transition,
// RecordOps), pg_leases.cc (leases and schedule), pg_queries.cc (reads); pg_rows.* is the row
// codec and pg_statements.h what the statements share. Here: the pool, the batchers, and the
// unbatched writes to a transaction's branches.

namespace treaty::store {

using core::BranchOp;
using core::TimePoint;

namespace {

// Every statement of this store looks rows up by key. A prepared statement keeps the generic plan
// made at its first uses; made while the tables were nearly empty (a new store), it scanned whole
// tables, and kept doing so as they grew until the next autoanalyze: throughput fell run after
// run. Without sequential scans every plan uses the indexes whatever the statistics say.
// And every statement is prepared and keyed, so its plan does not depend on the values:
// PostgreSQL's default still planned each execution anew ("custom plans"), a quarter of its CPU
// under load (docs/performance.md, finding 17).
constexpr const char* kSessionSettings =
    "SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan";

}  // namespace

PgTransactionStore::PgTransactionStore(PgStoreOptions options)
    : pool_(std::make_unique<Pool>(options.url, options.connect_timeout, options.pool_size,
                                   kSessionSettings)) {
  if (options.group_commit) {
    group_ = std::make_unique<GroupCommitter>(*pool_, options.group_commit_max_batch);
  }
  transitions_ = std::make_unique<Batcher<TransitionRequest, Status>>(
      [this](const std::vector<const TransitionRequest*>& batch) {
        return RunTransitions(batch, /*forced=*/true);
      },
      static_cast<size_t>(options.transition_batch), options.transition_batches_in_flight);
  creates_ = std::make_unique<Batcher<CreateRequest, Created>>(
      [this](const std::vector<const CreateRequest*>& batch) {
        return RunCreates(batch, /*forced=*/true);
      },
      static_cast<size_t>(options.transition_batch), options.transition_batches_in_flight);
  records_ = std::make_unique<Batcher<RecordRequest, Status>>(
      [this](const std::vector<const RecordRequest*>& batch) { return RunRecords(batch); },
      static_cast<size_t>(options.transition_batch), options.transition_batches_in_flight);
  if (options.unforced_records && !options.group_commit) {
    // synchronous_commit off for the whole session, set once per connection: SET LOCAL in each
    // write costs more round trips than the flush it saves (docs/performance.md, finding 32).
    // A commit here is visible at once and durable with the next forced commit of any session
    // (the WAL is one sequence): only the records that may ride on a later one come here.
    const int in_flight = std::max(1, options.transition_batches_in_flight);
    unforced_pool_ =
        std::make_unique<Pool>(options.url, options.connect_timeout, 2 * in_flight,
                               std::string(kSessionSettings) + "; SET synchronous_commit = off");
    unforced_transitions_ = std::make_unique<Batcher<TransitionRequest, Status>>(
        [this](const std::vector<const TransitionRequest*>& batch) {
          return RunTransitions(batch, /*forced=*/false);
        },
        static_cast<size_t>(options.transition_batch), in_flight);
    unforced_creates_ = std::make_unique<Batcher<CreateRequest, Created>>(
        [this](const std::vector<const CreateRequest*>& batch) {
          return RunCreates(batch, /*forced=*/false);
        },
        static_cast<size_t>(options.transition_batch), in_flight);
  }
}

PgTransactionStore::~PgTransactionStore() = default;

Status PgTransactionStore::Write(const std::function<Status(pqxx::transaction_base&)>& write) {
  if (group_) return group_->Run(write);
  return AsStatus(pool_->Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::work w(c);
    Status s = write(w);
    if (!s.ok()) return s;  // the transaction rolls back
    w.commit();
    return true;
  }));
}

Status PgTransactionStore::WriteStatement(
    const std::function<Status(pqxx::transaction_base&)>& write) {
  if (group_) return group_->Run(write);
  return AsStatus(pool_->Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::nontransaction w(c);
    Status s = write(w);
    if (!s.ok()) return s;
    return true;
  }));
}

Status PgTransactionStore::WriteStatementUnforced(
    const std::function<Status(pqxx::transaction_base&)>& write) {
  return AsStatus(unforced_pool_->Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::nontransaction w(c);
    Status s = write(w);
    if (!s.ok()) return s;
    return true;
  }));
}

Status PgTransactionStore::AddBranch(const std::string& gid, const std::vector<BranchOp>& ops) {
  return Write([&](pqxx::transaction_base& w) -> Status {
    // The branch's ops share one branch id (core: a registration adds one branch).
    pqxx::result r = Prepared(
        w,
        "SELECT status, submitted, ops @> jsonb_build_array(jsonb_build_object('branch_id', "
        "$2::text)) FROM treaty.transactions WHERE gid = $1 FOR UPDATE",
        gid, ops.empty() ? std::string() : ops.front().branch_id);
    if (r.empty()) return Status::NotFound("no transaction " + gid);
    if (r[0][0].as<std::string>() != "active" || r[0][1].as<bool>()) {
      return Status::Conflict("transaction " + gid + " takes no more branches");
    }
    if (ops.empty()) return Status::Ok();
    if (r[0][2].as<bool>()) {
      return Status::Conflict("branch " + ops.front().branch_id + " is registered already");
    }
    Prepared(w,
             "UPDATE treaty.transactions SET ops = ops || $2::jsonb, "
             "op_state = op_state || $3::jsonb WHERE gid = $1",
             gid, OpsJson(ops), OpStatesJson(ops));
    return Status::Ok();
  });
}

Status PgTransactionStore::MarkSubmitted(const std::string& gid, TimePoint now) {
  // One statement (one round trip, its own commit): the change and its log row, or neither.
  return WriteStatement([&](pqxx::transaction_base& w) -> Status {
    pqxx::result r = Prepared(w,
        "WITH changed AS (UPDATE treaty.transactions SET submitted = true, "
        "next_attempt_at = " SQL_TS(2) ", wake_requested = true, updated_at = " SQL_TS(2) " "
        "WHERE gid = $1 AND status = 'active' AND NOT submitted RETURNING gid), "
        "logged AS (INSERT INTO treaty.decision_log (gid, from_status, to_status, reason, at) "
        "SELECT gid, 'active', 'active', 'submitted', " SQL_TS(2) " FROM changed) "
        "SELECT gid FROM changed",
        gid, Ms(now));
    if (r.empty()) {
      if (!Exists(w, gid)) return NoTransaction(gid);
      return Status::Conflict("transaction " + gid + " cannot be submitted");
    }
    return Status::Ok();
  });
}

}  // namespace treaty::store
