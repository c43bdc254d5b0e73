#include "common/pg/pg_pool.h"

#include <gtest/gtest.h>

namespace treaty::pg {
namespace {

// A COMMIT whose connection was lost before its answer (a failover): the outcome is unknown, so
// the caller must read the state again. Internal would read as "the write failed".
TEST(StatusFromException, CommitOutcomeUnknownIsUnavailable) {
  Status s = StatusFromException(pqxx::in_doubt_error("connection lost during commit"));
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_NE(s.message().find("outcome unknown"), std::string::npos) << s.message();
}

TEST(StatusFromException, ReadOnlyStandbyIsUnavailable) {
  Status s = StatusFromException(
      pqxx::sql_error("cannot execute INSERT in a read-only transaction", "INSERT", "25006"));
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_EQ(StatusFromException(pqxx::sql_error("duplicate key", "INSERT", "23505")).code(),
            Status::Code::kInternal);
}

// The pool drops such connections: the next one, on a multi-host URL with
// target_session_attrs=read-write, finds the new primary.
TEST(IsConnectionLost, LostMidCommitOrOnAStandby) {
  EXPECT_TRUE(IsConnectionLost(pqxx::in_doubt_error("x")));
  EXPECT_TRUE(IsConnectionLost(pqxx::broken_connection("x")));
  EXPECT_TRUE(IsConnectionLost(pqxx::sql_error("read-only", "INSERT", "25006")));
  EXPECT_FALSE(IsConnectionLost(pqxx::sql_error("duplicate key", "INSERT", "23505")));
}

}  // namespace
}  // namespace treaty::pg
