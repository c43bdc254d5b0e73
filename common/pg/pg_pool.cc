#include "common/pg/pg_pool.h"

#include <poll.h>

#include <algorithm>

namespace treaty::pg {

std::string WithConnectTimeout(const std::string& url, Duration timeout) {
  int64_t seconds =
      std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(timeout).count());
  if (url.find("://") == std::string::npos) {
    return url + " connect_timeout=" + std::to_string(seconds);  // keyword form
  }
  return url + (url.find('?') == std::string::npos ? "?" : "&") +
         "connect_timeout=" + std::to_string(seconds);
}

Status StatusFromException(const std::exception& e) {
  // The connection was lost while COMMIT was on its way (a failover, a crash of the server): the
  // transaction may or may not have committed. Unavailable, never a failure: whoever wrote must
  // read the state again (from the new primary) rather than assume either outcome.
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return Status::Unavailable(std::string("database connection lost during commit, outcome "
                                           "unknown: ") +
                               e.what());
  }
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    return Status::Unavailable(std::string("database connection lost: ") + e.what());
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string& state = sql->sqlstate();
    // serialization_failure, deadlock_detected, lock_not_available, query_canceled (timeouts),
    // the server going away, and read_only_sql_transaction (a node demoted to standby by a
    // failover or switchover: a new connection finds the new primary).
    if (state == "40001" || state == "40P01" || state == "55P03" || state == "57014" ||
        state.rfind("08", 0) == 0 || state == "57P01" || state == "25006") {
      return Status::Unavailable(std::string("database busy: ") + e.what());
    }
  }
  return Status::Internal(std::string("database error: ") + e.what());
}

bool IsConnectionLost(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
      dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return true;
  }
  const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e);
  return sql != nullptr && (sql->sqlstate() == "25006" || sql->sqlstate() == "57P01");
}

PgPool::PgPool(std::string url, Duration connect_timeout, int size, std::string on_connect)
    : url_(WithConnectTimeout(url, connect_timeout)),
      size_(std::max(1, size)),
      on_connect_(std::move(on_connect)) {}

bool PgPool::LooksAlive(pqxx::connection& conn) {
  // Nothing is sent: an idle session's socket is readable only when the server spoke first, and
  // between statements it speaks when it goes away (57P01 and EOF on a restart or a
  // pg_terminate_backend). A notice of a reloaded setting drops a healthy connection too: one
  // reconnect, rarely. Sessions that LISTEN have connections of their own, not pooled ones.
  if (!conn.is_open()) return false;
  pollfd p{.fd = conn.sock(), .events = POLLIN, .revents = 0};
  return p.fd >= 0 && ::poll(&p, 1, 0) == 0;
}

std::unique_ptr<pqxx::connection> PgPool::Take() {
  MutexLock lock(mu_);
  cv_.wait(lock.native(), [&]() REQUIRES(mu_) { return !idle_.empty() || open_ < size_; });
  if (!idle_.empty()) {
    std::unique_ptr<pqxx::connection> conn = std::move(idle_.back());
    idle_.pop_back();
    return conn;
  }
  ++open_;
  return nullptr;
}

void PgPool::Give(std::unique_ptr<pqxx::connection> conn) {
  {
    MutexLock lock(mu_);
    if (conn) {
      idle_.push_back(std::move(conn));
    } else {
      --open_;
    }
  }
  cv_.notify_one();
}

}  // namespace treaty::pg
