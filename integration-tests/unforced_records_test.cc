// The records written without a WAL flush of their own (store.unforced_records, on by default:
// a waiting 2PC client's begin and every end record; docs/performance.md, finding 42) against a
// crash of the store's PostgreSQL (an immediate stop, which loses whatever WAL was not yet
// written out). Real processes on a real PostgreSQL with its default durability (the harness's
// clusters otherwise run with synchronous_commit off). The WAL writer is slowed down to its
// longest delay (10 s), so that an unforced record is lost whenever no forced commit came after
// it: what is checked is what a user would see, that no answer given is contradicted by what the
// store holds after the crash, and that the services' databases end consistent with the outcome.

#include <Poco/JSON/Object.h>
#include <gtest/gtest.h>

#include <csignal>
#include <optional>
#include <string>
#include <thread>

#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

// The WAL writer writes asynchronously committed records out only every 10 s (its longest
// delay): until a forced commit of any session or that delay, such a record is in shared memory
// only, and an immediate stop loses it.
Status SlowWalWriter(PgCluster& pg) {
  if (Status s = pg.Execute("postgres", "ALTER SYSTEM SET wal_writer_delay = '10s'"); !s.ok()) {
    return s;
  }
  return pg.Execute("postgres", "SELECT pg_reload_conf()");
}

// A crash of the store's database: an immediate stop (no checkpoint, no WAL written out), then
// crash recovery at the next start.
Status CrashAndRestart(PgCluster& pg) {
  if (Status s = pg.Stop(/*immediate=*/true); !s.ok()) return s;
  return pg.Restart();
}

// The status the store holds for `gid`, read in the store's database itself ("" when none).
std::string StoredStatus(PgCluster& pg, const std::string& gid) {
  auto v =
      pg.QueryValue("treaty", "SELECT status FROM treaty.transactions WHERE gid = '" + gid + "'");
  return v.ok() ? *v : "<unreadable: " + v.status().message() + ">";
}

std::string OrderBody(TreatyStack& s, const std::string& gid, bool wait) {
  return R"({"gid":")" + gid + R"(","mode":"2pc","timeout":"30s","wait":)" +
         (wait ? "true" : "false") + R"(,"branches":[)" + s.OrderBranch("order", "A1", 2) + "," +
         s.InventoryBranch("stock", "A1", 2) + "]}";
}

TEST(UnforcedRecordsTest, AnEndRecordLostInAStoreCrashIsDrivenToTheSameOutcomeAgain) {
  auto stack = TreatyStack::Start(StackOptions{.lease = "3s", .durable_store = true});
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  ASSERT_OK(SlowWalWriter(s.pg()));
  ASSERT_OK(s.SetStock("A1", 10));

  auto r = HttpCall("POST", s.treatyd().base_url() + "/v1/transactions",
                    OrderBody(s, "end-1", /*wait=*/true));
  ASSERT_TRUE(r.ok() && r->status == 200) << (r.ok() ? r->body : r.status().message());
  ASSERT_EQ(ParseObject(r->body)->getValue<std::string>("status"), "committed");
  // The client was told "committed". The end record was the last write, unforced: the crash
  // loses it (nothing forced came after it, and the WAL writer waits 10 s).
  ASSERT_OK(CrashAndRestart(s.pg()));
  const std::string after_crash = StoredStatus(s.pg(), "end-1");
  EXPECT_EQ(after_crash, "committing")
      << "the end record survived the crash: it was forced, or something flushed after it";
  // Never another outcome than the one answered, and driven to its end again (its lease, 3 s,
  // runs out first: the coordinator believes it finished).
  EXPECT_EQ(s.WaitFinal("end-1", std::chrono::seconds(60)), "committed");
  EXPECT_EQ(s.Stock("A1").value(), "8/0/2");
  EXPECT_EQ(s.OrderCount("end-1").value(), 1);
  EXPECT_EQ(s.PreparedCount("orders").value(), 0);
  EXPECT_EQ(s.PreparedCount("inventory").value(), 0);
}

TEST(UnforcedRecordsTest, ABeginLostInAStoreCrashLeavesNoOutcomeAndNothingPrepared) {
  // treatyd pauses right after a waiting client's begin is written (unforced), before any
  // prepare: the store crashes there. A short sweep age: the participants ask about their
  // prepared branches soon.
  auto stack =
      TreatyStack::Start(StackOptions{.treatyd_env = {{"TREATY_PAUSE_POINT", "after_begin"}},
                                      .sweep_older_than = "1s",
                                      .durable_store = true});
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  ASSERT_OK(SlowWalWriter(s.pg()));
  ASSERT_OK(s.SetStock("A1", 10));

  std::optional<Result<http::HttpReply>> answer;
  std::thread client([&] {
    answer = HttpCall("POST", s.treatyd().base_url() + "/v1/transactions",
                      OrderBody(s, "begin-1", /*wait=*/true), std::chrono::seconds(120));
  });
  const pid_t treatyd = s.treatyd().process().pid();
  ASSERT_TRUE(WaitUntil([&] { return IsStopped(treatyd); }, std::chrono::seconds(30)));
  ASSERT_OK(CrashAndRestart(s.pg()));
  // The begin rode on a decision that never came: it is gone.
  EXPECT_EQ(StoredStatus(s.pg(), "begin-1"), "") << "the begin survived: it was forced";
  ASSERT_EQ(::kill(treatyd, SIGCONT), 0);
  client.join();

  // Whatever the client was told, the store holds the same: nothing, so no outcome (here a
  // 404: treatyd's first write after the crash finds its connections gone, and the gid unknown
  // once it tries again; it then stops driving it). With the store and the participants in one
  // cluster, as here, a branch prepared after the begin would have flushed it (PREPARE
  // TRANSACTION is forced): the participants' half, a prepared branch of an unknown gid rolled
  // back by their sweep, is TwoPcTest.SweepRollsBackWhatTheCoordinatorNeverDecided.
  ASSERT_TRUE(answer.has_value() && answer->ok());
  const std::string stored = StoredStatus(s.pg(), "begin-1");
  if ((*answer)->status / 100 == 2) {
    EXPECT_EQ(ParseObject((*answer)->body)->getValue<std::string>("status"), stored)
        << "the client was told an outcome the store does not hold: " << (*answer)->body;
  }
  EXPECT_NE(stored, "committing");
  EXPECT_NE(stored, "committed");
  // Every branch the drive prepared meanwhile is rolled back by the participants' sweep (the
  // coordinator does not know the gid): no prepared transaction holds its locks, no row stays.
  EXPECT_TRUE(WaitUntil(
      [&] {
        auto orders = s.PreparedCount("orders");
        auto inventory = s.PreparedCount("inventory");
        return orders.ok() && *orders == 0 && inventory.ok() && *inventory == 0;
      },
      std::chrono::seconds(60)))
      << "a prepared branch of an unknown gid was kept";
  EXPECT_EQ(s.Stock("A1").value(), "10/0/0");
  EXPECT_EQ(s.OrderCount("begin-1").value(), 0);
}

TEST(UnforcedRecordsTest, ADecisionAnsweredToAClientSurvivesAStoreCrash) {
  auto stack = TreatyStack::Start(StackOptions{.durable_store = true});
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  ASSERT_OK(SlowWalWriter(s.pg()));
  // A transaction whose client registers its branches (none yet): its begin is an answer, and
  // the client's abort is a decision answered at once.
  auto begun = HttpCall("POST", s.treatyd().base_url() + "/v1/transactions",
                        R"({"gid":"abort-1","mode":"2pc","timeout":"60s"})");
  ASSERT_TRUE(begun.ok() && begun->status == 201) << (begun.ok() ? begun->body : "");
  auto aborted = HttpCall("POST", s.treatyd().base_url() + "/v1/transactions/abort-1/abort", "{}");
  ASSERT_TRUE(aborted.ok() && aborted->status / 100 == 2) << (aborted.ok() ? aborted->body : "");
  const std::string told = ParseObject(aborted->body)->getValue<std::string>("status");
  ASSERT_TRUE(told == "aborting" || told == "aborted") << told;
  ASSERT_OK(CrashAndRestart(s.pg()));
  const std::string stored = StoredStatus(s.pg(), "abort-1");
  EXPECT_TRUE(stored == "aborting" || stored == "aborted")
      << "the client was told " << told << ", the store holds \"" << stored << "\"";
  EXPECT_EQ(s.WaitFinal("abort-1", std::chrono::seconds(60)), "aborted");
}

TEST(UnforcedRecordsTest, ADriveCutAfterItsDecisionByAStoreCrashCommitsEverywhere) {
  // treatyd pauses right after the commit decision is written, before any branch is told.
  auto stack =
      TreatyStack::Start(StackOptions{.treatyd_env = {{"TREATY_PAUSE_POINT", "after_decision"}},
                                      .lease = "3s",
                                      .durable_store = true});
  ASSERT_TRUE(stack.ok()) << stack.status().message();
  TreatyStack& s = **stack;
  ASSERT_OK(SlowWalWriter(s.pg()));
  ASSERT_OK(s.SetStock("A1", 10));
  std::optional<Result<http::HttpReply>> answer;
  std::thread client([&] {
    answer = HttpCall("POST", s.treatyd().base_url() + "/v1/transactions",
                      OrderBody(s, "decided-1", /*wait=*/true), std::chrono::seconds(120));
  });
  const pid_t treatyd = s.treatyd().process().pid();
  ASSERT_TRUE(WaitUntil([&] { return IsStopped(treatyd); }, std::chrono::seconds(30)));
  ASSERT_OK(CrashAndRestart(s.pg()));
  // The decision is forced: it survives, and the begin with it (earlier in the WAL).
  EXPECT_EQ(StoredStatus(s.pg(), "decided-1"), "committing");
  ASSERT_EQ(::kill(treatyd, SIGCONT), 0);
  client.join();
  ASSERT_TRUE(answer.has_value() && answer->ok());
  if ((*answer)->status == 200) {
    const std::string told = ParseObject((*answer)->body)->getValue<std::string>("status");
    EXPECT_TRUE(told == "committing" || told == "committed") << told;
  }
  EXPECT_EQ(s.WaitFinal("decided-1", std::chrono::seconds(60)), "committed");
  EXPECT_EQ(s.Stock("A1").value(), "8/0/2");
  EXPECT_EQ(s.OrderCount("decided-1").value(), 1);
  EXPECT_EQ(s.PreparedCount("orders").value(), 0);
  EXPECT_EQ(s.PreparedCount("inventory").value(), 0);
}

}  // namespace
}  // namespace treaty::harness
