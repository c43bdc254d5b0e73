#include "coordinator/store/pg_rows.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <pqxx/pqxx>

#include "common/json_text.h"
#include "common/protocol/protocol.h"
#include "coordinator/store/pg_statements.h"

namespace treaty::store {

using core::BranchOp;
using core::Transaction;
using core::TxStatus;

std::string Str(const pqxx::field& f) { return f.is_null() ? std::string() : f.as<std::string>(); }

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

bool ListHas(const std::string& list, const std::string& item) {
  for (const std::string& x : SplitIds(list)) {
    if (x == item) return true;
  }
  return false;
}

namespace {

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

std::string OpKey(const BranchOp& o) { return o.branch_id + '/' + o.op; }

}  // namespace

std::string CallContextJson(const core::CallContext& c) {
  if (c.empty()) return "null";
  std::string out;
  {
    JsonRow row(out);
    row.Str("trace_id", c.trace_id).Str("span_id", c.span_id);
    row.Str("parent_span_id", c.parent_span_id).Str("flags", c.trace_flags);
    row.Str("tracestate", c.tracestate);
    row.Raw("headers", c.headers.empty() ? std::string("{}") : HeadersJson(c.headers));
    std::string secret = "[";
    for (const std::string& name : c.secret) {
      if (secret.size() > 1) secret += ',';
      secret += JsonQuote(name);
    }
    row.Raw("secret", secret + "]");
  }
  return out;
}

core::CallContext ParseCallContext(const std::string& text) {
  core::CallContext c;
  if (text.empty() || text == "null") return c;
  try {
    Poco::JSON::Parser parser;
    auto o = parser.parse(text).extract<Poco::JSON::Object::Ptr>();
    c.trace_id = o->optValue<std::string>("trace_id", "");
    c.span_id = o->optValue<std::string>("span_id", "");
    c.parent_span_id = o->optValue<std::string>("parent_span_id", "");
    c.trace_flags = o->optValue<std::string>("flags", "01");
    c.tracestate = o->optValue<std::string>("tracestate", "");
    if (auto h = o->getObject("headers")) {
      for (const auto& [k, v] : *h) c.headers[k] = v.toString();
    }
    if (auto s = o->getArray("secret")) {
      for (size_t i = 0; i < s->size(); ++i) c.secret.insert(s->getElement<std::string>(i));
    }
  } catch (const std::exception&) {
    return core::CallContext{};
  }
  return c;
}

namespace {

// An op's latest calls as [[started ms since the epoch, took µs, outcome], ...].
std::string CallsJson(const std::vector<core::OpCall>& calls) {
  std::string out = "[";
  for (const core::OpCall& c : calls) {
    if (out.size() > 1) out += ',';
    out += '[' + std::to_string(Ms(c.started)) + ',' + std::to_string(c.took.count()) + ",\"" +
           std::string(core::OpStatusName(c.outcome)) + "\"]";
  }
  out += ']';
  return out;
}

// What CallsJson wrote; entries it cannot read are left out.
std::vector<core::OpCall> ParseCalls(const std::string& text) {
  std::vector<core::OpCall> out;
  if (text.empty()) return out;
  try {
    Poco::JSON::Parser parser;
    auto a = parser.parse(text).extract<Poco::JSON::Array::Ptr>();
    for (size_t i = 0; i < a->size(); ++i) {
      auto c = a->getArray(static_cast<unsigned>(i));
      if (!c || c->size() != 3) continue;
      out.push_back(core::OpCall{
          FromMs(c->getElement<int64_t>(0)), std::chrono::microseconds(c->getElement<int64_t>(1)),
          core::ParseOpStatus(c->getElement<std::string>(2)).value_or(core::OpStatus::kPending)});
    }
  } catch (const std::exception&) {
  }
  return out;
}

// An op's own retry policy as {"attempts": n, "backoff_ms": n, "max_backoff_ms": n}.
std::string RetryJson(const core::OpRetry& r) {
  std::string out;
  {
    JsonRow row(out);
    row.Int("attempts", r.attempts);
    if (r.backoff) row.Int("backoff_ms", r.backoff->count());
    if (r.max_backoff) row.Int("max_backoff_ms", r.max_backoff->count());
  }
  return out;
}

// What RetryJson wrote; nullopt for none (or for what it cannot read).
std::optional<core::OpRetry> ParseRetry(const std::string& text) {
  if (text.empty()) return std::nullopt;
  try {
    Poco::JSON::Parser parser;
    auto o = parser.parse(text).extract<Poco::JSON::Object::Ptr>();
    core::OpRetry r;
    r.attempts = o->optValue<int>("attempts", 0);
    if (o->has("backoff_ms")) r.backoff = Duration(o->getValue<int64_t>("backoff_ms"));
    if (o->has("max_backoff_ms")) r.max_backoff = Duration(o->getValue<int64_t>("max_backoff_ms"));
    return r;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

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
    row.Str("after_ids", JoinIds(o.after)).Str("topic", o.topic).Str("msg_key", o.message_key);
    const std::string headers = HeadersJson(o.message_headers);
    row.Raw("msg_headers", headers.empty() ? "null" : headers);
    if (o.retry) row.Raw("retry", RetryJson(*o.retry));
  }
  out += ']';
  return out;
}

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
        if (!o.calls.empty()) row.Raw("calls", CallsJson(o.calls));
        if (!o.output_json.empty()) row.Raw("output", o.output_json);
      }
      states.Raw(OpKey(o), state);
    }
  }
  return out;
}

Result<Transaction> LoadJoined(pqxx::transaction_base& w, const std::string& gid) {
  pqxx::result r = Prepared(w,
      "SELECT t.mode, t.status, t.submitted, t.sequential, t.request::text, t.request_digest, "
      "t.reason, t.attention, t.definition, " SQL_MS("t.deadline") ", " SQL_MS("t.next_attempt_at") ", "
      SQL_MS("t.created_at") ", " SQL_MS("t.updated_at") ", b.branch_id, b.op, b.position, b.url, "
      "b.payload::text, b.timeout_ms, s.status, s.attempts, s.last_error, b.after_ids, b.msg_key, "
      "b.msg_headers::text, b.topic, s.calls::text, b.retry::text, s.output::text, "
      "t.call_context::text "
      "FROM treaty.transactions t "
      "LEFT JOIN LATERAL ROWS FROM (jsonb_to_recordset(t.ops) AS (branch_id text, op text, "
      "position integer, url text, payload jsonb, timeout_ms bigint, after_ids text, "
      "msg_key text, msg_headers jsonb, topic text, retry jsonb)) WITH ORDINALITY AS b(branch_id, "
      "op, position, url, payload, timeout_ms, after_ids, msg_key, msg_headers, topic, retry, "
      "added) ON true "
      "LEFT JOIN LATERAL jsonb_to_record(t.op_state -> (b.branch_id || '/' || b.op)) "
      "AS s(status text, attempts integer, last_error text, calls jsonb, output jsonb) ON true "
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
  tx.context = ParseCallContext(Str(r[0][29]));
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
    o.topic = Str(row[25]);
    o.calls = ParseCalls(Str(row[26]));
    o.retry = ParseRetry(Str(row[27]));
    o.output_json = Str(row[28]);
    // A publish op written by a treatyd from before schema 5 (one still running beside this one
    // during a rolling upgrade) names its topic in its url.
    if (o.topic.empty() && o.op == protocol::kPublish && o.url.rfind("kafka:", 0) == 0) {
      o.topic = o.url.substr(6);
      o.url.clear();
    }
    tx.ops.push_back(std::move(o));
  }
  return tx;
}

void LoadLog(pqxx::transaction_base& w, Transaction* tx) {
  pqxx::result log = Prepared(w,
      "SELECT " SQL_MS("at") ", from_status, to_status, reason, actor FROM treaty.decision_log "
      "WHERE gid = $1 ORDER BY id",
      tx->gid);
  for (const auto& row : log) {
    core::LogEntry e;
    e.at = FromMs(row[0].as<int64_t>());
    if (!row[1].is_null()) e.from = core::ParseStatus(row[1].as<std::string>());
    e.to = core::ParseStatus(row[2].as<std::string>()).value_or(TxStatus::kActive);
    e.reason = Str(row[3]);
    e.actor = Str(row[4]);
    tx->log.push_back(std::move(e));
  }
}

}  // namespace treaty::store
