#pragma once

// What the PostgreSQL transaction store's statements share (internal to treaty_pg_store):
// prepared execution, the SQL fragments for times, leases and the op merge, and the store's
// connection pool. Times cross the wire as milliseconds since the epoch; leases are taken and
// compared by the database's clock only (store.h, Fence).

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <utility>

#include "common/pg/pg_pool.h"
#include "coordinator/core/transaction.h"
#include "coordinator/store/pg_transaction_store.h"

namespace treaty::store {

inline int64_t Ms(core::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
inline core::TimePoint FromMs(int64_t ms) { return core::TimePoint(std::chrono::milliseconds(ms)); }

// An optional time as a nullable query parameter.
inline std::optional<int64_t> OptionalMs(const std::optional<core::TimePoint>& t) {
  if (!t) return std::nullopt;
  return Ms(*t);
}

inline int64_t LeaseMs(Duration lease) { return lease.count(); }

// Runs `sql` as a prepared statement, named after its text: PostgreSQL parses and plans it once
// per connection rather than at every call (parsing and planning were most of its CPU under
// load; docs/performance.md). libpqxx registers the definition once and prepares it on first use.
template <typename... Args>
inline pqxx::result Prepared(pqxx::transaction_base& w, const std::string& sql, Args&&... args) {
  const std::string name = "treaty_" + std::to_string(std::hash<std::string>{}(sql));
  w.conn().prepare(name, sql);
  return w.exec_prepared(name, std::forward<Args>(args)...);
}

// Parameter $n (milliseconds since the epoch) as a timestamp.
#define SQL_TS(n) "to_timestamp($" #n "::bigint / 1000.0)"
// The database's now plus a lease in milliseconds: leases are taken and compared by the
// database's clock only (store.h, Fence).
#define SQL_LEASE_END(ms) "(now() + (" ms ") * interval '1 millisecond')"

// The monotonic merge of recorded op outcomes (`incoming`, an OpStatesJson object) into
// t.op_state (store.h): a succeeded op stays as stored, and a refused one is not set back to
// pending, whatever a stale or repeated write says (its attempts and last error still move on,
// so that its backoff keeps growing; its list of latest calls is the one of the write with more
// attempts).
#define SQL_MERGED_OPS(incoming)                                                            \
  "t.op_state || coalesce((SELECT jsonb_object_agg(e.key, CASE "                            \
  "WHEN t.op_state -> e.key ->> 'status' = 'succeeded' THEN t.op_state -> e.key "           \
  "WHEN t.op_state -> e.key ->> 'status' = 'refused' AND e.value ->> 'status' = 'pending' " \
  "THEN e.value || jsonb_build_object('status', 'refused', 'attempts', "                    \
  "greatest((t.op_state -> e.key ->> 'attempts')::int, (e.value ->> 'attempts')::int), "    \
  "'calls', coalesce(CASE WHEN (t.op_state -> e.key ->> 'attempts')::int > "                \
  "(e.value ->> 'attempts')::int THEN t.op_state -> e.key -> 'calls' "                      \
  "ELSE e.value -> 'calls' END, '[]'::jsonb)) "                                             \
  "ELSE e.value END) FROM jsonb_each(" incoming ") AS e), '{}')"

// Column `col` (a timestamp) as milliseconds since the epoch.
#define SQL_MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"

// The statuses of a transaction still to be driven, as an SQL list.
inline constexpr const char* kUnfinished = "('active', 'prepared', 'committing', 'aborting')";

// Whether transaction `gid` is stored. Asked only after a keyed statement changed no row, to
// tell an unknown gid (NotFound, store.h) from a state that refused the change.
inline bool Exists(pqxx::transaction_base& w, const std::string& gid) {
  return !Prepared(w, "SELECT 1 FROM treaty.transactions WHERE gid = $1", gid).empty();
}

inline Status NoTransaction(const std::string& gid) {
  return Status::NotFound("no transaction " + gid);
}

// Status-returning calls run through Pool::Run<bool>.
inline Status AsStatus(const Result<bool>& r) { return r.ok() ? Status::Ok() : r.status(); }

class PgTransactionStore::Pool : public pg::PgPool {
 public:
  using PgPool::PgPool;
};

}  // namespace treaty::store
