// The connection pool every Treaty process uses (common/pg/pg_pool.h) against a real server that
// goes away under its idle connections: a restart, or an administrator ending sessions. A caller
// must not pay for a connection that died while it sat in the pool: a participant answering 503
// to a coordinator's resumed call after a store restart sends it into a retry backoff.

#include <gtest/gtest.h>

#include <latch>
#include <thread>
#include <vector>

#include "common/pg/pg_pool.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/test_support.h"

namespace treaty::harness {
namespace {

constexpr int kPoolSize = 3;

// Lends out every connection of `pool` at once, so that kPoolSize of them sit idle afterwards.
void FillPool(pg::PgPool& pool) {
  std::latch all_taken(kPoolSize);
  std::vector<std::thread> users;
  for (int i = 0; i < kPoolSize; ++i) {
    users.emplace_back([&] {
      auto r = pool.Run<int>([&](pqxx::connection& c) -> Result<int> {
        pqxx::nontransaction(c).exec("SELECT 1");
        all_taken.arrive_and_wait();
        return 1;
      });
      EXPECT_TRUE(r.ok()) << r.status().message();
    });
  }
  for (std::thread& t : users) t.join();
}

// One statement per call, each reporting the backend that ran it.
Result<int> BackendPid(pg::PgPool& pool) {
  return pool.Run<int>([](pqxx::connection& c) -> Result<int> {
    return pqxx::nontransaction(c).exec1("SELECT pg_backend_pid()")[0].as<int>();
  });
}

TEST(PgPoolTest, EveryCallAfterAServerRestartSucceeds) {
  auto pg = PgCluster::Start();
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  pg::PgPool pool((*pg)->ConnectionString(), std::chrono::seconds(5), kPoolSize);
  FillPool(pool);
  ASSERT_OK((*pg)->Stop());
  ASSERT_OK((*pg)->Restart());
  for (int i = 0; i < kPoolSize + 1; ++i) {
    auto pid = BackendPid(pool);
    EXPECT_TRUE(pid.ok()) << "call " << i << " after the restart: " << pid.status().message();
  }
}

TEST(PgPoolTest, ASessionEndedByAnAdministratorIsNotLentOut) {
  auto pg = PgCluster::Start();
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  pg::PgPool pool((*pg)->ConnectionString(), std::chrono::seconds(5), kPoolSize);
  FillPool(pool);
  auto ended =
      (*pg)->QueryValue("postgres",
                        "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
                        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
  ASSERT_TRUE(ended.ok()) << ended.status().message();
  ASSERT_EQ(*ended, std::to_string(kPoolSize));
  for (int i = 0; i < kPoolSize + 1; ++i) {
    auto pid = BackendPid(pool);
    EXPECT_TRUE(pid.ok()) << "call " << i
                          << " after the sessions ended: " << pid.status().message();
  }
}

}  // namespace
}  // namespace treaty::harness
