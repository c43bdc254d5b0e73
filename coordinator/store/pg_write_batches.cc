// PgTransactionStore's batched writes: Create, Transition and RecordOps. Concurrent calls go to
// the database together (pg_write_batches.h), each batch as one statement and one commit.

#include "coordinator/store/pg_write_batches.h"

#include <pqxx/pqxx>
#include <set>

#include "common/batcher.h"
#include "coordinator/core/state_machine.h"
#include "coordinator/store/pg_rows.h"
#include "coordinator/store/pg_statements.h"
#include "coordinator/store/pg_transaction_store.h"

namespace treaty::store {

using core::BranchOp;
using core::TimePoint;
using core::Transaction;
using core::TxStatus;

Result<core::CreateResult> PgTransactionStore::Create(const Transaction& tx,
                                                      const std::string& owner, Duration lease) {
  CreateRequest req{tx.gid, ""};
  {
    JsonRow row(req.row);
    row.Str("gid", tx.gid).Str("mode", core::ModeName(tx.mode));
    row.Str("status", core::StatusName(tx.status));
    row.Raw("request", tx.request_json.empty() ? std::string("{}") : tx.request_json);
    row.Str("request_digest", tx.request_digest).Bool("submitted", tx.submitted);
    row.Int("deadline_ms", Ms(tx.deadline)).Int("next_ms", Ms(tx.next_attempt_at));
    row.Str("owner", owner).Int("lease_ms", LeaseMs(lease)).Int("created_ms", Ms(tx.created_at));
    row.Bool("sequential", tx.sequential).Str("definition", tx.definition);
    row.Raw("ops", OpsJson(tx.ops)).Raw("op_state", OpStatesJson(tx.ops));
    row.Raw("call_context", CallContextJson(tx.context));
    row.Str("reason", tx.submitted
                          ? "begun with " + std::to_string(tx.BranchIds().size()) + " branches"
                          : "begun; waiting for branches");
  }
  Created created = creates_->Submit(tx.gid, std::move(req));
  if (!created.status.ok()) return created.status;
  if (created.created) return core::CreateResult{true, {}};
  auto existing = Load(tx.gid, /*with_log=*/false);
  if (!existing.ok()) return existing.status();
  return core::CreateResult{false, std::move(*existing)};
}

std::vector<PgTransactionStore::Created> PgTransactionStore::RunCreates(
    const std::vector<const CreateRequest*>& batch) {
  std::string rows = "[";
  for (const CreateRequest* r : batch) {
    if (rows.size() > 1) rows += ',';
    rows += r->row;
  }
  rows += ']';
  std::vector<Created> out(batch.size(), Created{Status::Ok(), false});
  auto created =
      pool_->Run<std::set<std::string>>([&](pqxx::connection& c) -> Result<std::set<std::string>> {
        // One statement, so one round trip and one commit for the batch (no gid twice:
        // batcher.h): each transaction's row (its ops in it) and its first log row go in, or
        // (its gid exists) neither does.
        pqxx::nontransaction w(c);
        pqxx::result r = Prepared(w,
            "WITH req AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(gid text, mode text, "
            "status text, request jsonb, request_digest text, submitted boolean, "
            "deadline_ms bigint, next_ms bigint, owner text, lease_ms bigint, created_ms bigint, "
            "sequential boolean, definition text, ops jsonb, op_state jsonb, reason text, "
            "call_context jsonb)), "
            "t AS (INSERT INTO treaty.transactions (gid, mode, status, request, request_digest, "
            "submitted, deadline, next_attempt_at, owner, lease_until, created_at, updated_at, "
            "sequential, definition, ops, op_state, call_context) SELECT gid, mode, status, request, "
            "request_digest, "
            "submitted, to_timestamp(deadline_ms / 1000.0), to_timestamp(next_ms / 1000.0), "
            "owner, " SQL_LEASE_END("lease_ms") ", to_timestamp(created_ms / 1000.0), "
            "to_timestamp(created_ms / 1000.0), sequential, NULLIF(definition, ''), ops, op_state, "
            "NULLIF(call_context, 'null'::jsonb) "
            "FROM req "
            "ON CONFLICT (gid) DO NOTHING RETURNING gid), "
            "l AS (INSERT INTO treaty.decision_log (gid, from_status, to_status, reason, at) "
            "SELECT t.gid, NULL, req.status, req.reason, to_timestamp(req.created_ms / 1000.0) "
            "FROM t JOIN req ON req.gid = t.gid) "
            "SELECT gid FROM t",
            rows);
        std::set<std::string> gids;
        for (const auto& row : r) gids.insert(row[0].as<std::string>());
        return gids;
      });
  if (!created.ok()) {
    return AnswerFailedBatch<CreateRequest, Created>(
        batch, created.status(), [this](const auto& one) { return RunCreates(one); });
  }
  for (size_t i = 0; i < batch.size(); ++i) out[i].created = created->count(batch[i]->gid) > 0;
  return out;
}

Status PgTransactionStore::Transition(const std::string& gid, TxStatus from, TxStatus to,
                                      const std::string& reason, TimePoint now,
                                      const std::vector<BranchOp>& ops, const core::Fence* fence) {
  // The state machine and the fence are checked by the same statement that makes the change, so
  // the checks and the change are one atomic step.
  TransitionRequest req{gid, from, to, reason, now, "", OpStatesJson(ops), std::nullopt};
  if (fence != nullptr) req.fence = *fence;
  for (core::Mode m : {core::Mode::k2pc, core::Mode::kTcc, core::Mode::kSaga, core::Mode::kMsg}) {
    if (core::FindTransition(m, from, to) != nullptr) {
      if (!req.legal_modes.empty()) req.legal_modes += ',';
      req.legal_modes += core::ModeName(m);
    }
  }
  return transitions_->Submit(gid, std::move(req));
}

std::vector<Status> PgTransactionStore::RunTransitions(
    const std::vector<const TransitionRequest*>& batch) {
  std::string requests = "[";
  for (size_t i = 0; i < batch.size(); ++i) {
    const TransitionRequest& r = *batch[i];
    if (i > 0) requests += ',';
    JsonRow row(requests);
    row.Int("i", static_cast<int64_t>(i)).Str("gid", r.gid);
    row.Str("from_status", core::StatusName(r.from)).Str("to_status", core::StatusName(r.to));
    row.Str("reason", r.reason).Int("at_ms", Ms(r.now)).Str("modes", r.legal_modes);
    row.Raw("ops", r.ops_json);
    if (r.fence) {
      row.Str("owner", r.fence->owner).Int("lease_ms", LeaseMs(r.fence->lease));
    } else {
      row.Null("owner").Null("lease_ms");
    }
  }
  requests += ']';
  // Also as an array: the statement is prepared once, with a generic plan, so every lookup is
  // written to go through an index whatever the planner thinks of the batch's size.
  // Each element quoted: unquoted, a gid spelled "null" would be an SQL NULL (ids have no quotes
  // or backslashes, core::ValidId).
  std::string gids = "{";
  for (const TransitionRequest* r : batch) gids += (gids.size() > 1 ? ",\"" : "\"") + r->gid + '"';
  gids += '}';
  std::vector<Status> out(batch.size(), Status::Internal("no answer for this transition"));
  Status run = WriteStatement([&](pqxx::transaction_base& w) -> Status {
    // One statement and one commit for the whole batch (no gid twice: batcher.h). Each move is
    // made iff the status is still `from`, the move is legal for the mode and every op to record
    // exists (`found`); its log row and its ops' outcomes are written with it, and only with it.
    pqxx::result r = Prepared(w,
        "WITH req AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(i integer, gid text, "
        "from_status text, to_status text, reason text, at_ms bigint, modes text, ops jsonb, "
        "owner text, lease_ms bigint)), "
        "cur AS (SELECT t.gid, t.mode, t.status, "
        "t.op_state ?& ARRAY(SELECT jsonb_object_keys(req.ops)) AS found, "
        // The fence: a drive's move only while its lease runs, by the database's clock.
        "coalesce(req.owner IS NULL OR (t.owner = req.owner AND t.lease_until > now()), false) "
        "AS fenced "
        // Locked in gid order, as RunRecords does: two batches that share transactions (a
        // client's abort while a drive records) wait for each other instead of deadlocking.
        "FROM treaty.transactions t JOIN req ON req.gid = t.gid "
        "WHERE t.gid = ANY($2::text[]) ORDER BY t.gid FOR UPDATE OF t), "
        "changed AS (UPDATE treaty.transactions t SET status = req.to_status, reason = req.reason, "
        "updated_at = to_timestamp(req.at_ms / 1000.0), "
        "next_attempt_at = to_timestamp(req.at_ms / 1000.0), op_state = " SQL_MERGED_OPS("req.ops") ", "
        "lease_until = CASE WHEN req.owner IS NULL THEN t.lease_until "
        "ELSE " SQL_LEASE_END("req.lease_ms") " END "
        "FROM req JOIN cur ON cur.gid = req.gid "
        "WHERE t.gid = ANY($2::text[]) AND t.gid = req.gid AND cur.status = req.from_status "
        "AND cur.mode = ANY(string_to_array(req.modes, ',')) AND cur.found AND cur.fenced "
        "RETURNING req.i), "
        "logged AS (INSERT INTO treaty.decision_log (gid, from_status, to_status, reason, at) "
        "SELECT req.gid, req.from_status, req.to_status, req.reason, "
        "to_timestamp(req.at_ms / 1000.0) FROM changed JOIN req ON req.i = changed.i) "
        // (logged runs whether read or not: data-modifying WITH runs to completion.)
        "SELECT req.i, cur.mode, cur.status, changed.i IS NOT NULL, cur.fenced "
        "FROM req LEFT JOIN cur ON cur.gid = req.gid LEFT JOIN changed ON changed.i = req.i",
        requests, gids);
    for (const auto& row : r) {
      const size_t i = row[0].as<size_t>();
      if (i >= batch.size()) continue;
      const TransitionRequest& req = *batch[i];
      if (row[3].as<bool>()) {
        out[i] = Status::Ok();
      } else if (row[1].is_null()) {
        out[i] = Status::NotFound("no transaction " + req.gid);
      } else if (!row[4].as<bool>()) {
        out[i] = Status::LeaseLost("transaction " + req.gid + " is no longer leased to " +
                                   req.fence->owner);
      } else if (std::string current = row[2].as<std::string>();
                 current != core::StatusName(req.from)) {
        out[i] = Status::Conflict("transaction " + req.gid + " is " + current + ", not " +
                                  std::string(core::StatusName(req.from)));
      } else if (!ListHas(req.legal_modes, row[1].as<std::string>())) {
        out[i] = Status::Conflict("illegal transition " + std::string(core::StatusName(req.from)) +
                                  " -> " + std::string(core::StatusName(req.to)));
      } else {
        out[i] =
            Status::NotFound("transaction " + req.gid + " lacks one of the branch ops recorded");
      }
    }
    return Status::Ok();
  });
  if (!run.ok()) {
    return AnswerFailedBatch<TransitionRequest, Status>(
        batch, run, [this](const auto& one) { return RunTransitions(one); });
  }
  return out;
}

Status PgTransactionStore::RecordOps(const std::string& gid, const std::vector<BranchOp>& ops,
                                     TimePoint now, const core::Fence& fence) {
  return records_->Submit(gid, RecordRequest{gid, now, OpStatesJson(ops), fence});
}

std::vector<Status> PgTransactionStore::RunRecords(const std::vector<const RecordRequest*>& batch) {
  std::string requests = "[";
  std::string gids = "{";  // quoted, as in RunTransitions
  for (size_t i = 0; i < batch.size(); ++i) {
    const RecordRequest& r = *batch[i];
    if (i > 0) requests += ',';
    JsonRow row(requests);
    row.Int("i", static_cast<int64_t>(i)).Str("gid", r.gid).Int("at_ms", Ms(r.now));
    row.Raw("ops", r.ops_json).Str("owner", r.fence.owner).Int("lease_ms", LeaseMs(r.fence.lease));
    gids += (i > 0 ? ",\"" : "\"") + r.gid + '"';
  }
  requests += ']';
  gids += '}';
  std::vector<Status> out(batch.size(), Status::Internal("no answer for this record"));
  // One statement and one commit for the batch (no gid twice: batcher.h); each transaction's
  // ops are all recorded and its lease renewed, or (an op does not exist, or the fence fails)
  // nothing is.
  Status run = WriteStatement([&](pqxx::transaction_base& w) -> Status {
    pqxx::result r = Prepared(w,
        "WITH req AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(i integer, gid text, "
        "at_ms bigint, ops jsonb, owner text, lease_ms bigint)), "
        // Locked in gid order first, as in RunTransitions.
        "locked AS (SELECT gid, owner, lease_until > now() AS live FROM treaty.transactions "
        "WHERE gid = ANY($2::text[]) ORDER BY gid FOR UPDATE), "
        "changed AS (UPDATE treaty.transactions t SET op_state = " SQL_MERGED_OPS("req.ops") ", "
        "updated_at = CASE WHEN req.ops = '{}' THEN t.updated_at "
        "ELSE to_timestamp(req.at_ms / 1000.0) END, lease_until = " SQL_LEASE_END("req.lease_ms") " "
        "FROM req JOIN locked ON locked.gid = req.gid "
        "WHERE t.gid = ANY($2::text[]) AND t.gid = req.gid AND locked.owner = req.owner "
        "AND locked.live AND t.op_state ?& ARRAY(SELECT jsonb_object_keys(req.ops)) "
        "RETURNING req.i) "
        "SELECT req.i, locked.gid IS NOT NULL, coalesce(locked.owner = req.owner AND locked.live, "
        "false), changed.i IS NOT NULL FROM req LEFT JOIN locked ON locked.gid = req.gid "
        "LEFT JOIN changed ON changed.i = req.i",
        requests, gids);
    for (const auto& row : r) {
      const size_t i = row[0].as<size_t>();
      if (i >= out.size()) continue;
      const RecordRequest& req = *batch[i];
      if (row[3].as<bool>()) {
        out[i] = Status::Ok();
      } else if (!row[1].as<bool>()) {
        out[i] = Status::NotFound("no transaction " + req.gid);
      } else if (!row[2].as<bool>()) {
        out[i] = Status::LeaseLost("transaction " + req.gid + " is no longer leased to " +
                                   req.fence.owner);
      } else {
        out[i] =
            Status::NotFound("transaction " + req.gid + " lacks one of the branch ops recorded");
      }
    }
    return Status::Ok();
  });
  if (!run.ok()) {
    return AnswerFailedBatch<RecordRequest, Status>(
        batch, run, [this](const auto& one) { return RunRecords(one); });
  }
  return out;
}

}  // namespace treaty::store
