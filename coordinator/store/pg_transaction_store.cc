#include "coordinator/store/pg_transaction_store.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <pqxx/pqxx>

#include <functional>
#include <optional>
#include <set>

#include "coordinator/core/state_machine.h"
#include "common/json_text.h"
#include "common/pg/pg_pool.h"
#include "common/batcher.h"
#include "coordinator/store/group_commit.h"

namespace treaty::store {

using core::BranchOp;
using core::TimePoint;
using core::Transaction;
using core::TxStatus;

namespace {

// Timestamps cross the wire as milliseconds since the epoch.
int64_t Ms(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
TimePoint FromMs(int64_t ms) { return TimePoint(std::chrono::milliseconds(ms)); }

// Runs `sql` as a prepared statement, named after its text: PostgreSQL parses and plans it once
// per connection rather than at every call (parsing and planning were most of its CPU under
// load; docs/performance.md). libpqxx registers the definition once and prepares it on first use.
template <typename... Args>
pqxx::result Prepared(pqxx::transaction_base& w, const std::string& sql, Args&&... args) {
  const std::string name = "treaty_" + std::to_string(std::hash<std::string>{}(sql));
  w.conn().prepare(name, sql);
  return w.exec_prepared(name, std::forward<Args>(args)...);
}

// An optional time as a nullable query parameter.
std::optional<int64_t> OptionalMs(const std::optional<TimePoint>& t) {
  if (!t) return std::nullopt;
  return Ms(*t);
}

#define TS(n) "to_timestamp($" #n "::bigint / 1000.0)"
// The database's now plus a lease in milliseconds: leases are taken and compared by the
// database's clock only (store.h, Fence).
#define LEASE_END(ms) "(now() + (" ms ") * interval '1 millisecond')"

// The monotonic merge of recorded op outcomes (`incoming`, an OpStatesJson object) into
// t.op_state (store.h): a succeeded op stays as stored, and a refused one is not set back to
// pending, whatever a stale or repeated write says (its attempts and last error still move on,
// so that its backoff keeps growing).
#define MERGED_OPS(incoming)                                                                \
  "t.op_state || coalesce((SELECT jsonb_object_agg(e.key, CASE "                            \
  "WHEN t.op_state -> e.key ->> 'status' = 'succeeded' THEN t.op_state -> e.key "           \
  "WHEN t.op_state -> e.key ->> 'status' = 'refused' AND e.value ->> 'status' = 'pending' " \
  "THEN e.value || jsonb_build_object('status', 'refused', 'attempts', "                    \
  "greatest((t.op_state -> e.key ->> 'attempts')::int, (e.value ->> 'attempts')::int)) "    \
  "ELSE e.value END) FROM jsonb_each(" incoming ") AS e), '{}')"

int64_t LeaseMs(Duration lease) { return lease.count(); }
#define MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

constexpr const char* kUnfinished = "('active', 'prepared', 'committing', 'aborting')";

std::string Str(const pqxx::field& f) { return f.is_null() ? std::string() : f.as<std::string>(); }

// Ids never contain commas (core::ValidId), so a comma-separated list is exact.
std::string JoinIds(const std::vector<std::string>& ids) {
  std::string out;
  for (const std::string& id : ids) out += (out.empty() ? "" : ",") + id;
  return out;
}

std::vector<std::string> SplitIds(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// Whether the comma-separated `list` has `item`.
bool ListHas(const std::string& list, const std::string& item) {
  for (const std::string& x : SplitIds(list)) {
    if (x == item) return true;
  }
  return false;
}

// Store rows cross as JSON text built here directly: building Poco::JSON objects for them was a
// sixth of treatyd's CPU under load (docs/performance.md).
class JsonRow {
 public:
  explicit JsonRow(std::string& out) : out_(out) { out_ += '{'; }
  ~JsonRow() { out_ += '}'; }
  JsonRow(const JsonRow&) = delete;
  JsonRow& operator=(const JsonRow&) = delete;

  // A NUL (which no PostgreSQL text can hold, and jsonb refuses as \u0000) becomes U+FFFD.
  JsonRow& Str(std::string_view key, std::string_view value) {
    Key(key);
    if (value.find('\0') == std::string_view::npos) {
      out_ += JsonQuote(value);
    } else {
      std::string clean(value);
      for (size_t at = clean.find('\0'); at != std::string::npos; at = clean.find('\0', at)) {
        clean.replace(at, 1, "\xEF\xBF\xBD");
      }
      out_ += JsonQuote(clean);
    }
    return *this;
  }
  JsonRow& Int(std::string_view key, int64_t value) {
    Key(key);
    out_ += std::to_string(value);
    return *this;
  }
  // `json` must be valid JSON text (it goes in as it is: no second quoting and escaping).
  JsonRow& Raw(std::string_view key, std::string_view json) {
    Key(key);
    out_ += json;
    return *this;
  }
  JsonRow& Bool(std::string_view key, bool value) {
    Key(key);
    out_ += value ? "true" : "false";
    return *this;
  }
  JsonRow& Null(std::string_view key) {
    Key(key);
    out_ += "null";
    return *this;
  }

 private:
  void Key(std::string_view key) {
    if (out_.back() != '{') out_ += ',';
    out_ += JsonQuote(key);
    out_ += ':';
  }
  std::string& out_;
};

std::string HeadersJson(const std::map<std::string, std::string>& headers) {
  if (headers.empty()) return "";
  std::string out;
  {
    JsonRow row(out);
    for (const auto& [k, v] : headers) row.Str(k, v);
  }
  return out;
}

std::map<std::string, std::string> ParseHeaders(const std::string& text) {
  std::map<std::string, std::string> out;
  if (text.empty()) return out;
  try {
    Poco::JSON::Parser parser;
    auto o = parser.parse(text).extract<Poco::JSON::Object::Ptr>();
    for (const auto& [k, v] : *o) out[k] = v.toString();
  } catch (const std::exception&) {
  }
  return out;
}

// What does not change in each op, as the JSON array stored in the transaction's `ops` column
// (migration 4).
std::string OpsJson(const std::vector<BranchOp>& ops) {
  std::string out = "[";
  for (const BranchOp& o : ops) {
    if (out.size() > 1) out += ',';
    JsonRow row(out);
    row.Str("branch_id", o.branch_id).Str("op", o.op).Int("position", o.position);
    row.Str("url", o.url).Raw("payload", o.payload_json.empty() ? "null" : o.payload_json);
    if (o.timeout) {
      row.Int("timeout_ms", o.timeout->count());
    } else {
      row.Null("timeout_ms");
    }
    row.Str("after_ids", JoinIds(o.after)).Str("msg_key", o.message_key);
    const std::string headers = HeadersJson(o.message_headers);
    row.Raw("msg_headers", headers.empty() ? "null" : headers);
  }
  out += ']';
  return out;
}

// The state of each op (status, attempts, last error) as a JSON object keyed by OpKey: all of
// the transaction's `op_state` column, or the part of it that a round of calls changed (merged
// into it with ||).
std::string OpKey(const BranchOp& o) { return o.branch_id + '/' + o.op; }

std::string OpStatesJson(const std::vector<BranchOp>& ops) {
  std::string out;
  {
    JsonRow states(out);  // closes the object when it goes out of scope: before the return
    for (const BranchOp& o : ops) {
      std::string state;
      {
        JsonRow row(state);
        row.Str("status", core::OpStatusName(o.status)).Int("attempts", o.attempts);
        row.Str("last_error", o.last_error);
      }
      states.Raw(OpKey(o), state);
    }
  }
  return out;
}

// The transaction and its ops in one round trip (no decision log), one snapshot.
Result<Transaction> LoadJoined(pqxx::transaction_base& w, const std::string& gid) {
  pqxx::result r = Prepared(w,
      "SELECT t.mode, t.status, t.submitted, t.sequential, t.request::text, t.request_digest, "
      "t.reason, t.attention, t.definition, " MS("t.deadline") ", " MS("t.next_attempt_at") ", "
      MS("t.created_at") ", " MS("t.updated_at") ", b.branch_id, b.op, b.position, b.url, "
      "b.payload::text, b.timeout_ms, s.status, s.attempts, s.last_error, b.after_ids, b.msg_key, "
      "b.msg_headers::text FROM treaty.transactions t "
      "LEFT JOIN LATERAL ROWS FROM (jsonb_to_recordset(t.ops) AS (branch_id text, op text, "
      "position integer, url text, payload jsonb, timeout_ms bigint, after_ids text, "
      "msg_key text, msg_headers jsonb)) WITH ORDINALITY AS b(branch_id, op, position, url, "
      "payload, timeout_ms, after_ids, msg_key, msg_headers, added) ON true "
      "LEFT JOIN LATERAL jsonb_to_record(t.op_state -> (b.branch_id || '/' || b.op)) "
      "AS s(status text, attempts integer, last_error text) ON true "
      // Ties of position (branches registered at once) in the order they were added.
      "WHERE t.gid = $1 ORDER BY b.position, b.op, b.added",
      gid);
  if (r.empty()) return Status::NotFound("no transaction " + gid);
  Transaction tx;
  tx.gid = gid;
  tx.mode = core::ParseMode(r[0][0].as<std::string>()).value_or(core::Mode::k2pc);
  tx.status = core::ParseStatus(r[0][1].as<std::string>()).value_or(TxStatus::kActive);
  tx.submitted = r[0][2].as<bool>();
  tx.sequential = r[0][3].as<bool>();
  tx.request_json = Str(r[0][4]);
  tx.request_digest = Str(r[0][5]);
  tx.reason = Str(r[0][6]);
  tx.attention = Str(r[0][7]);
  tx.definition = Str(r[0][8]);
  tx.deadline = FromMs(r[0][9].as<int64_t>());
  tx.next_attempt_at = FromMs(r[0][10].as<int64_t>());
  tx.created_at = FromMs(r[0][11].as<int64_t>());
  tx.updated_at = FromMs(r[0][12].as<int64_t>());
  for (const auto& row : r) {
    if (row[13].is_null()) continue;  // no ops yet (LEFT JOIN)
    BranchOp o;
    o.branch_id = row[13].as<std::string>();
    o.op = Str(row[14]);
    o.position = row[15].is_null() ? 0 : row[15].as<int>();
    o.url = Str(row[16]);
    o.payload_json = row[17].is_null() ? "null" : row[17].as<std::string>();
    if (!row[18].is_null()) o.timeout = Duration(row[18].as<int64_t>());
    o.status = core::ParseOpStatus(Str(row[19])).value_or(core::OpStatus::kPending);
    o.attempts = row[20].is_null() ? 0 : row[20].as<int>();
    o.last_error = Str(row[21]);
    o.after = SplitIds(Str(row[22]));
    o.message_key = Str(row[23]);
    o.message_headers = ParseHeaders(Str(row[24]));
    tx.ops.push_back(std::move(o));
  }
  return tx;
}

// The decision log of `tx`, appended to tx->log.
void LoadLog(pqxx::transaction_base& w, Transaction* tx) {
  pqxx::result log = Prepared(w,
      "SELECT " MS("at") ", from_status, to_status, reason FROM treaty.decision_log "
      "WHERE gid = $1 ORDER BY id",
      tx->gid);
  for (const auto& row : log) {
    core::LogEntry e;
    e.at = FromMs(row[0].as<int64_t>());
    if (!row[1].is_null()) e.from = core::ParseStatus(row[1].as<std::string>());
    e.to = core::ParseStatus(row[2].as<std::string>()).value_or(TxStatus::kActive);
    e.reason = Str(row[3]);
    tx->log.push_back(std::move(e));
  }
}

}  // namespace

class PgTransactionStore::Pool : public pg::PgPool {
 public:
  using PgPool::PgPool;
};

namespace {
// Status-returning calls run through Pool::Run<bool>.
Status AsStatus(const Result<bool>& r) { return r.ok() ? Status::Ok() : r.status(); }
}  // namespace

PgTransactionStore::PgTransactionStore(PgStoreOptions options)
    : pool_(std::make_unique<Pool>(
          options.url, options.connect_timeout, options.pool_size,
          // Every statement of this store looks rows up by key. A prepared statement keeps the
          // generic plan made at its first uses; made while the tables were nearly empty (a new
          // store), it scanned whole tables, and kept doing so as they grew until the next
          // autoanalyze: throughput fell run after run. Without sequential scans every plan uses
          // the indexes whatever the statistics say.
          // And every statement is prepared and keyed, so its plan does not depend on the
          // values: PostgreSQL's default still planned each execution anew ("custom plans"),
          // a quarter of its CPU under load (docs/performance.md, finding 17).
          "SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan")) {
  if (options.group_commit) {
    group_ = std::make_unique<GroupCommitter>(*pool_, options.group_commit_max_batch);
  }
  transitions_ = std::make_unique<Batcher<TransitionRequest, Status>>(
      [this](const std::vector<const TransitionRequest*>& batch) { return RunTransitions(batch); },
      static_cast<size_t>(options.transition_batch), options.transition_batches_in_flight);
  creates_ = std::make_unique<Batcher<CreateRequest, Created>>(
      [this](const std::vector<const CreateRequest*>& batch) { return RunCreates(batch); },
      static_cast<size_t>(options.transition_batch), options.transition_batches_in_flight);
  records_ = std::make_unique<Batcher<RecordRequest, Status>>(
      [this](const std::vector<const RecordRequest*>& batch) { return RunRecords(batch); },
      static_cast<size_t>(options.transition_batch), options.transition_batches_in_flight);
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

struct PgTransactionStore::CreateRequest {
  std::string gid;
  std::string row;  // the transaction, its ops and its first log reason as one JSON object
};

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
  auto created = pool_->Run<std::set<std::string>>(
      [&](pqxx::connection& c) -> Result<std::set<std::string>> {
        // One statement, so one round trip and one commit for the batch (no gid twice:
        // batcher.h): each transaction's row (its ops in it) and its first log row go in, or
        // (its gid exists) neither does.
        pqxx::nontransaction w(c);
        pqxx::result r = Prepared(w,
            "WITH req AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(gid text, mode text, "
            "status text, request jsonb, request_digest text, submitted boolean, "
            "deadline_ms bigint, next_ms bigint, owner text, lease_ms bigint, created_ms bigint, "
            "sequential boolean, definition text, ops jsonb, op_state jsonb, reason text)), "
            "t AS (INSERT INTO treaty.transactions (gid, mode, status, request, request_digest, "
            "submitted, deadline, next_attempt_at, owner, lease_until, created_at, updated_at, "
            "sequential, definition, ops, op_state) SELECT gid, mode, status, request, request_digest, "
            "submitted, to_timestamp(deadline_ms / 1000.0), to_timestamp(next_ms / 1000.0), "
            "owner, " LEASE_END("lease_ms") ", to_timestamp(created_ms / 1000.0), "
            "to_timestamp(created_ms / 1000.0), sequential, NULLIF(definition, ''), ops, op_state "
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
  if (!created.ok() && batch.size() > 1 &&
      created.status().code() != Status::Code::kUnavailable) {
    // As in RunTransitions: one request may be why; each on its own.
    for (size_t i = 0; i < batch.size(); ++i) out[i] = RunCreates({batch[i]}).front();
    return out;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!created.ok()) {
      out[i].status = created.status();  // nothing of the batch was written
    } else {
      out[i].created = created->count(batch[i]->gid) > 0;
    }
  }
  return out;
}

Result<Transaction> PgTransactionStore::Load(const std::string& gid, bool with_log) {
  return pool_->Run<Transaction>([&](pqxx::connection& c) -> Result<Transaction> {
    if (!with_log) {
      pqxx::nontransaction w(c);  // one statement: its own snapshot
      return LoadJoined(w, gid);
    }
    pqxx::read_transaction w(c);  // the transaction and its log from one snapshot
    auto tx = LoadJoined(w, gid);
    if (tx.ok()) LoadLog(w, &*tx);
    return tx;
  });
}

Status PgTransactionStore::AddBranch(const std::string& gid, const std::vector<BranchOp>& ops) {
  return Write([&](pqxx::transaction_base& w) -> Status {
    // The branch's ops share one branch id (core: a registration adds one branch).
    pqxx::result r = Prepared(w,
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
        "next_attempt_at = " TS(2) ", wake_requested = true, updated_at = " TS(2) " "
        "WHERE gid = $1 AND status = 'active' AND NOT submitted RETURNING gid), "
        "logged AS (INSERT INTO treaty.decision_log (gid, from_status, to_status, reason, at) "
        "SELECT gid, 'active', 'active', 'submitted', " TS(2) " FROM changed) "
        "SELECT gid FROM changed",
        gid, Ms(now));
    if (r.empty()) return Status::Conflict("transaction " + gid + " cannot be submitted");
    return Status::Ok();
  });
}

struct PgTransactionStore::TransitionRequest {
  std::string gid;
  TxStatus from;
  TxStatus to;
  std::string reason;
  TimePoint now;
  std::string legal_modes;  // the modes in which from -> to is legal, comma-separated
  std::string ops_json;     // OpStatesJson: the outcomes to record
  std::optional<core::Fence> fence;  // a drive's; none for a client's move
};

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
        "next_attempt_at = to_timestamp(req.at_ms / 1000.0), op_state = " MERGED_OPS("req.ops") ", "
        "lease_until = CASE WHEN req.owner IS NULL THEN t.lease_until "
        "ELSE " LEASE_END("req.lease_ms") " END "
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
        out[i] = Status::NotFound("transaction " + req.gid +
                                  " lacks one of the branch ops recorded");
      }
    }
    return Status::Ok();
  });
  if (!run.ok()) {
    if (batch.size() > 1 && run.code() != Status::Code::kUnavailable) {
      // Nothing of the batch was written, and one request may be why (a value PostgreSQL
      // refuses): each on its own, so that the others are not refused with it.
      for (size_t i = 0; i < batch.size(); ++i) out[i] = RunTransitions({batch[i]}).front();
    } else {
      for (Status& s : out) s = run;  // nothing of the batch was written
    }
  }
  return out;
}

struct PgTransactionStore::RecordRequest {
  std::string gid;
  TimePoint now;
  std::string ops_json;  // OpStatesJson; "{}" only renews the lease
  core::Fence fence;
};

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
        "changed AS (UPDATE treaty.transactions t SET op_state = " MERGED_OPS("req.ops") ", "
        "updated_at = CASE WHEN req.ops = '{}' THEN t.updated_at "
        "ELSE to_timestamp(req.at_ms / 1000.0) END, lease_until = " LEASE_END("req.lease_ms") " "
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
    if (batch.size() > 1 && run.code() != Status::Code::kUnavailable) {
      // As in RunTransitions: one request may be why; each on its own.
      for (size_t i = 0; i < batch.size(); ++i) out[i] = RunRecords({batch[i]}).front();
    } else {
      for (Status& s : out) s = run;  // nothing of the batch was written
    }
  }
  return out;
}

Status PgTransactionStore::SetAttention(const std::string& gid, const std::string& attention,
                                        const core::Fence* fence) {
  return WriteStatement([&](pqxx::transaction_base& w) -> Status {
    if (fence == nullptr) {
      Prepared(w, "UPDATE treaty.transactions SET attention = NULLIF($2, '') WHERE gid = $1", gid,
               attention);
      return Status::Ok();
    }
    pqxx::result r = Prepared(w,
        "UPDATE treaty.transactions SET attention = NULLIF($2, ''), "
        "lease_until = " LEASE_END("$4::bigint") " "
        "WHERE gid = $1 AND owner = $3 AND lease_until > now() RETURNING gid",
        gid, attention, fence->owner, LeaseMs(fence->lease));
    if (r.empty()) {
      return Status::LeaseLost("transaction " + gid + " is no longer leased to " + fence->owner);
    }
    return Status::Ok();
  });
}

Status PgTransactionStore::Reschedule(const std::string& gid, const std::string& owner,
                                      TimePoint next_attempt_at) {
  return WriteStatement([&](pqxx::transaction_base& w) -> Status {
    Prepared(w,
        "UPDATE treaty.transactions SET next_attempt_at = CASE WHEN wake_requested "
        "THEN next_attempt_at ELSE " TS(3) " END, wake_requested = false, lease_until = NULL "
        "WHERE gid = $1 AND owner = $2",
        gid, owner, Ms(next_attempt_at));
    return Status::Ok();
  });
}

Status PgTransactionStore::MakeDue(const std::string& gid, TimePoint now) {
  return WriteStatement([&](pqxx::transaction_base& w) -> Status {
    pqxx::result r = Prepared(w,
        std::string("UPDATE treaty.transactions SET next_attempt_at = " TS(2) ", "
                    "wake_requested = true WHERE gid = $1 AND status IN ") +
            kUnfinished + " RETURNING gid",
        gid, Ms(now));
    if (r.empty()) return Status::Conflict("transaction " + gid + " is not unfinished");
    return Status::Ok();
  });
}

Result<std::vector<std::string>> PgTransactionStore::ClaimDue(const std::string& owner,
                                                              TimePoint now, Duration lease,
                                                              int limit) {
  return pool_->Run<std::vector<std::string>>(
      [&](pqxx::connection& c) -> Result<std::vector<std::string>> {
        // One statement, so no BEGIN and COMMIT (two more round trips), here and below.
        pqxx::nontransaction w(c);
        pqxx::result r = Prepared(w,
            std::string("UPDATE treaty.transactions SET owner = $1, lease_until = " LEASE_END(
                            "$3::bigint") " "
                        "WHERE gid IN (SELECT gid FROM treaty.transactions WHERE status IN ") +
                kUnfinished +
                " AND next_attempt_at <= " TS(2) " AND (lease_until IS NULL OR lease_until <= "
                "now()) ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING gid",
            owner, Ms(now), LeaseMs(lease), limit);
        std::vector<std::string> gids;
        for (const auto& row : r) gids.push_back(row[0].as<std::string>());
        return gids;
      });
}

Result<bool> PgTransactionStore::TryLease(const std::string& gid, const std::string& owner,
                                          Duration lease) {
  return pool_->Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::nontransaction w(c);
    pqxx::result r = Prepared(
        w,
        std::string("UPDATE treaty.transactions SET owner = $2, lease_until = " LEASE_END(
            "$3::bigint") " WHERE gid = $1 AND status IN ") +
            kUnfinished +
            " AND (lease_until IS NULL OR lease_until <= now() OR owner = $2) RETURNING gid",
        gid, owner, LeaseMs(lease));
    return !r.empty();
  });
}

Status PgTransactionStore::ReleaseLeases(const std::string& node) {
  return AsStatus(pool_->Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::nontransaction w(c);
    Prepared(w,
             "UPDATE treaty.transactions SET lease_until = NULL WHERE owner = $1 "
             "OR left(owner, length($1) + 1) = $1 || '#'",
             node);
    return true;
  }));
}

Result<std::vector<Transaction>> PgTransactionStore::List(const core::ListFilter& f) {
  return pool_->Run<std::vector<Transaction>>(
      [&](pqxx::connection& c) -> Result<std::vector<Transaction>> {
        pqxx::read_transaction w(c);
        pqxx::result r = Prepared(w,
            "SELECT gid, mode, status, reason, attention, " MS("deadline") ", " MS(
                "created_at") ", " MS("updated_at") " FROM treaty.transactions "
            "WHERE ($1 = '' OR status = $1) AND ($2 = '' OR mode = $2) AND gid > $3 "
            "AND ($5::bigint IS NULL OR created_at >= to_timestamp($5::bigint / 1000.0)) "
            "AND ($6::bigint IS NULL OR created_at < to_timestamp($6::bigint / 1000.0)) "
            "AND ($7::bigint IS NULL OR (status IN " +
                std::string(kUnfinished) +
                " AND (coalesce(attention, '') <> '' OR deadline < to_timestamp($7::bigint / 1000.0)))) "
                "ORDER BY gid LIMIT $4",
            f.status ? std::string(core::StatusName(*f.status)) : std::string(),
            f.mode ? std::string(core::ModeName(*f.mode)) : std::string(), f.after_gid, f.limit,
            OptionalMs(f.created_since), OptionalMs(f.created_before), OptionalMs(f.stuck_at));
        std::vector<Transaction> out;
        for (const auto& row : r) {
          Transaction tx;
          tx.gid = row[0].as<std::string>();
          tx.mode = core::ParseMode(row[1].as<std::string>()).value_or(core::Mode::k2pc);
          tx.status = core::ParseStatus(row[2].as<std::string>()).value_or(TxStatus::kActive);
          tx.reason = Str(row[3]);
          tx.attention = Str(row[4]);
          tx.deadline = FromMs(row[5].as<int64_t>());
          tx.created_at = FromMs(row[6].as<int64_t>());
          tx.updated_at = FromMs(row[7].as<int64_t>());
          out.push_back(std::move(tx));
        }
        return out;
      });
}

}  // namespace treaty::store

namespace treaty::store {

Result<std::map<core::TxStatus, int64_t>> PgTransactionStore::CountByStatus() {
  using Out = std::map<core::TxStatus, int64_t>;
  return pool_->Run<Out>([&](pqxx::connection& c) -> Result<Out> {
    pqxx::read_transaction tx(c);
    // Counting every row is what a sequential scan is for. The store's sessions turn it off
    // (finding 14 of docs/performance.md): the plan is then still one, but costed as disabled
    // and without parallel workers, about 6 times slower over 300,000 rows.
    tx.exec("SET LOCAL enable_seqscan = on");
    Out out;
    for (const auto& row :
         tx.exec("SELECT status, count(*) FROM treaty.transactions GROUP BY status")) {
      if (auto s = core::ParseStatus(row[0].as<std::string>())) out[*s] = row[1].as<int64_t>();
    }
    return out;
  });
}

Result<std::pair<std::map<std::string, int64_t>, double>> PgTransactionStore::InFlight() {
  using Out = std::pair<std::map<std::string, int64_t>, double>;
  return pool_->Run<Out>([&](pqxx::connection& c) -> Result<Out> {
    pqxx::read_transaction tx(c);
    Out out;
    pqxx::result counts = tx.exec(std::string("SELECT status, count(*) FROM treaty.transactions "
                                              "WHERE status IN ") +
                                  kUnfinished + " GROUP BY status");
    for (const auto& row : counts) out.first[row[0].as<std::string>()] = row[1].as<int64_t>();
    pqxx::result lag = tx.exec(std::string("SELECT coalesce(extract(epoch FROM now() - "
                                           "min(next_attempt_at)), 0) FROM treaty.transactions "
                                           "WHERE status IN ") +
                               kUnfinished + " AND next_attempt_at <= now()");
    out.second = lag[0][0].as<double>();
    return out;
  });
}

}  // namespace treaty::store
