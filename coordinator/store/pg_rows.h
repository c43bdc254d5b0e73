#pragma once

// The row codec of the PostgreSQL transaction store (internal to treaty_pg_store): core types
// to the JSON text that statements take (a transaction's `ops` and `op_state` columns, request
// rows), and result rows back to core types.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/json_text.h"
#include "common/status.h"
#include "coordinator/core/transaction.h"

namespace pqxx {
class field;
class transaction_base;
}  // namespace pqxx

namespace treaty::store {

// A nullable text field; empty when NULL.
std::string Str(const pqxx::field& f);

// Ids never contain commas (core::ValidId), so a comma-separated list is exact.
std::string JoinIds(const std::vector<std::string>& ids);
std::vector<std::string> SplitIds(const std::string& text);
// Whether the comma-separated `list` has `item`.
bool ListHas(const std::string& list, const std::string& item);

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

// What does not change in each op, as the JSON array stored in the transaction's `ops` column
// (migration 4).
std::string OpsJson(const std::vector<core::BranchOp>& ops);

// The state of each op (status, attempts, last error, and its latest calls as
// [[started ms, took µs, outcome], ...]) as a JSON object keyed by
// "branch_id/op": all of the transaction's `op_state` column, or the part of it that a round of
// calls changed (merged into it with ||).
std::string OpStatesJson(const std::vector<core::BranchOp>& ops);

// The transaction and its ops in one round trip (no decision log), one snapshot; NotFound when
// there is no such gid.
// A transaction's trace context and propagated headers as stored (transactions.call_context):
// {"trace_id", "span_id", "parent_span_id", "flags", "tracestate", "headers": {..},
// "secret": [..]}; "null" for none. ParseCallContext reads it back ("" or bad: none).
std::string CallContextJson(const core::CallContext& c);
core::CallContext ParseCallContext(const std::string& text);

Result<core::Transaction> LoadJoined(pqxx::transaction_base& w, const std::string& gid);

// The decision log of `tx`, appended to tx->log.
void LoadLog(pqxx::transaction_base& w, core::Transaction* tx);

}  // namespace treaty::store
