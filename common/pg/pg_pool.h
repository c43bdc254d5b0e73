#pragma once

// A fixed-size pool of libpqxx connections, opened on demand and dropped when broken, for every
// process that talks to PostgreSQL (treatyd's store, the participants, the relay). libpqxx
// exceptions stop in Run(): they come back as Status values. Thread-safe.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "common/duration.h"
#include "common/status.h"
#include "common/thread_annotations.h"

namespace treaty::pg {

// `url` (a libpq URI or keyword string) with connect_timeout set.
std::string WithConnectTimeout(const std::string& url, Duration timeout);

// Maps a libpqxx/std exception to a Status: a lost connection, a serialization failure, a
// deadlock or a lock timeout is Unavailable (try again); anything else Internal.
Status StatusFromException(const std::exception& e);

// Whether a connection that threw `e` must be dropped rather than reused: lost (also mid-commit),
// or on a server that is now a read-only standby (after a failover; libpq's
// target_session_attrs=read-write only applies when connecting).
bool IsConnectionLost(const std::exception& e);

class PgPool {
 public:
  // `on_connect`, when not empty, is run on each new connection before its first use (session
  // settings).
  PgPool(std::string url, Duration connect_timeout, int size, std::string on_connect = "");

  // Runs `fn(pqxx::connection&)`, which returns Result<T>, on a pooled connection. Blocks while
  // every connection is lent out.
  template <typename T, typename Fn>
  Result<T> Run(Fn&& fn) {
    std::unique_ptr<pqxx::connection> conn = Take();
    // An idle connection that the server closed meanwhile (a restart, a failover, an idle
    // timeout) would fail the caller's first statement: replaced by a new one first.
    if (conn && !LooksAlive(*conn)) conn.reset();
    bool healthy = true;
    Result<T> result = Status::Internal("not run");
    try {
      if (!conn) {
        conn = std::make_unique<pqxx::connection>(url_);
        if (!on_connect_.empty()) pqxx::nontransaction(*conn).exec(on_connect_);
      }
      result = fn(*conn);
    } catch (const std::exception& e) {
      result = StatusFromException(e);
      healthy = conn != nullptr && conn->is_open() && !IsConnectionLost(e);
    }
    Give(healthy ? std::move(conn) : nullptr);
    return result;
  }

 private:
  // False when an idle connection has anything to read: the server's goodbye (an error and the
  // end of the stream), or anything else an idle session should never receive. Does not block.
  static bool LooksAlive(pqxx::connection& conn);
  std::unique_ptr<pqxx::connection> Take();           // null: open a new one
  void Give(std::unique_ptr<pqxx::connection> conn);  // null: that connection is gone

  const std::string url_;
  const int size_;
  const std::string on_connect_;
  Mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_ GUARDED_BY(mu_);
  int open_ GUARDED_BY(mu_) = 0;  // idle + lent out
};

}  // namespace treaty::pg
