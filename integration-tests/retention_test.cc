// Retention (issue #21, docs/recovery.md "Retention", docs/participants.md "Retention"): treatyd
// purges finished transactions past retention.history with their decision log, and the
// participant kit purges barrier rows, 2PC marks and inbox rows past their windows; never an
// unfinished transaction, never a barrier row an unfinished transaction still needs, never an
// inbox row inside its dedupe window. Real treatyd, real participants, real PostgreSQL. Rows are
// made old the honest way: their times are moved back in SQL (every time the purge reads, by
// the database's clock), nothing else is touched.

#include <Poco/JSON/Object.h>
#include <gtest/gtest.h>

#include <sstream>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"
#include "integration-tests/outbox_fixture.h"

namespace treaty::harness {
namespace {

constexpr auto kWait = std::chrono::seconds(90);

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = TreatyStack::Start(StackOptions{
        // Batches of two: a round takes several statements. A slow retry: a transaction stuck
        // committing is not written again (which would make it young) while the test looks.
        .treatyd_extra_yaml = "retention: { history: 1h, batch: 2, interval: 200ms }\n",
        .retry = "{ initial: 2m, max: 2m, multiplier: 1, jitter: 0 }",
        .participant_extra_yaml =
            "retention: { barrier_window: 1h, inbox_window: 1h, batch: 2, interval: 200ms }\n",
    });
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
    ASSERT_OK(stack_->SetStock("A1", 100));
  }

  std::string Query(const std::string& db, const std::string& sql) {
    auto v = stack_->pg().QueryValue(db, sql);
    EXPECT_TRUE(v.ok()) << sql << ": " << v.status().message();
    return v.ok() ? *v : "";
  }

  int Count(const std::string& db, const std::string& sql) { return std::stoi(Query(db, sql)); }

  HttpReply Post(const std::string& path, const std::string& body) {
    auto r = HttpCall("POST", stack_->treatyd().base_url() + path, body, std::chrono::seconds(60));
    EXPECT_TRUE(r.ok()) << path << ": " << r.status().message();
    return r.ok() ? *r : HttpReply{};
  }

  // The value of one sample line ("name{labels}") on a service's /metrics; -1 when missing.
  double Metric(Service& s, const std::string& sample) {
    auto r = HttpCall("GET", s.base_url() + "/metrics");
    if (!r.ok() || r->status != 200) return -1;
    std::istringstream lines(r->body);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(sample + " ", 0) == 0) return std::stod(line.substr(sample.size() + 1));
    }
    return -1;
  }

  std::string TwoPc(const std::string& gid, int qty) {
    return R"({"gid":")" + gid + R"(","mode":"2pc","timeout":"20s","wait":true,"branches":[)" +
           stack_->InventoryBranch("stock", "A1", qty) + "]}";
  }

  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(RetentionTest, TreatydPurgesOldFinishedTransactionsWithTheirLogButNeverAnUnfinishedOne) {
  // Finished: three committed and one aborted (out of stock), to be made old; one committed
  // that stays young.
  for (const char* gid : {"old-c1", "old-c2", "old-c3"}) {
    ASSERT_EQ(Post("/v1/transactions", TwoPc(gid, 1)).status, 200) << gid;
  }
  ASSERT_EQ(Post("/v1/transactions", TwoPc("old-a1", 5000)).status, 200);
  ASSERT_EQ(Post("/v1/transactions", TwoPc("young-c1", 1)).status, 200);
  ASSERT_EQ(stack_->StatusOf("old-a1"), "aborted");
  // Unfinished: one begun and never submitted (active), one decided but stuck committing (its
  // commit URL leads nowhere; its next attempt is two minutes away).
  ASSERT_EQ(Post("/v1/transactions", R"({"gid":"old-active","mode":"2pc","timeout":"10m"})").status,
            201);
  auto dead_port = FreePort();
  ASSERT_OK(dead_port);
  std::string stuck = stack_->InventoryBranch("stock", "A1", 1);
  const std::string commit_url = TreatyStack::Url(stack_->inventory(), "/2pc/commit");
  stuck.replace(stuck.find(commit_url), commit_url.size(),
                "http://127.0.0.1:" + std::to_string(*dead_port) + "/2pc/commit");
  ASSERT_EQ(
      Post("/v1/transactions",
           R"({"gid":"old-committing","mode":"2pc","timeout":"20s","branches":[)" + stuck + "]}")
          .status,
      201);
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Query("treaty",
                     "SELECT coalesce((op_state->'stock/commit'->>'attempts')::int, 0) >= 1 "
                     "FROM treaty.transactions WHERE gid = 'old-committing'") == "t";
      },
      kWait))
      << "the stuck transaction never tried its commit";
  ASSERT_EQ(stack_->StatusOf("old-committing"), "committing");

  const int old_log_rows = Count("treaty",
                                 "SELECT count(*) FROM treaty.decision_log WHERE gid IN "
                                 "('old-c1', 'old-c2', 'old-c3', 'old-a1')");
  ASSERT_GE(old_log_rows, 8);
  const int unfinished_log_rows = Count(
      "treaty",
      "SELECT count(*) FROM treaty.decision_log WHERE gid IN ('old-active', 'old-committing')");
  ASSERT_GE(unfinished_log_rows, 2);

  // Two hours old, finished or not, by the store's clock.
  ASSERT_OK(stack_->pg().Execute(
      "treaty",
      "UPDATE treaty.transactions SET created_at = now() - interval '2 hours', "
      "updated_at = now() - interval '2 hours' WHERE gid LIKE 'old-%'"));

  ASSERT_TRUE(WaitUntil(
      [&] {
        return Count("treaty",
                     "SELECT count(*) FROM treaty.transactions WHERE gid IN "
                     "('old-c1', 'old-c2', 'old-c3', 'old-a1')") == 0;
      },
      kWait))
      << "the old finished transactions were not purged";
  EXPECT_EQ(Count("treaty",
                  "SELECT count(*) FROM treaty.decision_log WHERE gid IN "
                  "('old-c1', 'old-c2', 'old-c3', 'old-a1')"),
            0)
      << "their decision log goes with them";
  auto gone = HttpCall("GET", stack_->treatyd().base_url() + "/v1/transactions/old-c1");
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->status, 404);

  // Unfinished ones stay, however old, with their log; a young finished one stays.
  EXPECT_EQ(Query("treaty",
                  "SELECT string_agg(gid || '=' || status, ',' ORDER BY gid) FROM "
                  "treaty.transactions"),
            "old-active=active,old-committing=committing,young-c1=committed");
  EXPECT_EQ(Count("treaty",
                  "SELECT count(*) FROM treaty.decision_log WHERE gid IN "
                  "('old-active', 'old-committing')"),
            unfinished_log_rows);
  EXPECT_EQ(stack_->StatusOf("old-committing"), "committing");
  EXPECT_EQ(stack_->StatusOf("young-c1"), "committed");

  // What a user sees on /metrics: the rows purged, and the oldest finished one kept (young-c1,
  // seconds old, far below the history).
  Service& t = stack_->treatyd();
  EXPECT_TRUE(WaitUntil(
      [&] { return Metric(t, R"(treaty_retention_purged_rows_total{table="transactions"})") == 4; },
      kWait))
      << Metric(t, R"(treaty_retention_purged_rows_total{table="transactions"})");
  EXPECT_EQ(Metric(t, R"(treaty_retention_purged_rows_total{table="decision_log"})"), old_log_rows);
  const double oldest = Metric(t, "treaty_retention_oldest_finished_age_seconds");
  EXPECT_GE(oldest, 0);
  EXPECT_LT(oldest, 3600);
}

TEST_F(RetentionTest, TwoTreatydOnOneStorePurgeSideBySide) {
  // A second treatyd on the same store, purging back to back in batches of three while the
  // first purges in batches of two: each transaction is deleted once, by one of them.
  auto second = Service::Start(ServiceSpec{
      .name = "treatyd-2",
      .binary = kTreatydPath,
      .config_yaml = TestTreatydConfig(
          stack_->pg(), "retention: { history: 1h, batch: 3, interval: 100ms, pause: 0s }\n"),
      .extra_args = {},
      .env = {{"TREATY_NODE_ID", "second-node"}}});
  ASSERT_TRUE(second.ok()) << second.status().message();
  ASSERT_TRUE(BecomesReady(**second));
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(Post("/v1/transactions", TwoPc("side-" + std::to_string(i), 1)).status, 200) << i;
  }
  const int log_rows =
      Count("treaty", "SELECT count(*) FROM treaty.decision_log WHERE gid LIKE 'side-%'");
  ASSERT_OK(stack_->pg().Execute("treaty",
                                 "UPDATE treaty.transactions SET updated_at = now() - interval "
                                 "'2 hours' WHERE gid LIKE 'side-%'"));
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Count("treaty",
                     "SELECT count(*) FROM treaty.transactions WHERE gid LIKE 'side-%'") == 0;
      },
      kWait));
  EXPECT_EQ(Count("treaty", "SELECT count(*) FROM treaty.decision_log WHERE gid LIKE 'side-%'"), 0);
  const char* tx = R"(treaty_retention_purged_rows_total{table="transactions"})";
  const char* log = R"(treaty_retention_purged_rows_total{table="decision_log"})";
  EXPECT_EQ(Metric(stack_->treatyd(), tx) + Metric(**second, tx), 30);
  EXPECT_EQ(Metric(stack_->treatyd(), log) + Metric(**second, log), log_rows);
}

TEST_F(RetentionTest, ParticipantKeepsWhatUnfinishedTransactionsNeedAndInboxRowsInTheirWindow) {
  const std::string base = stack_->treatyd().base_url();
  // Finished: a committed TCC transaction and a committed 2PC one (barrier rows and a 2PC
  // mark at inventory-svc).
  ASSERT_EQ(Post("/v1/transactions",
                 R"({"gid":"tcc-done","mode":"tcc","timeout":"20s","wait":true,"branches":[)" +
                     stack_->InventoryTccBranch("stock", "A1", 1) + "]}")
                .status,
            200);
  ASSERT_EQ(stack_->StatusOf("tcc-done"), "committed");
  ASSERT_EQ(Post("/v1/transactions", TwoPc("twopc-done", 1)).status, 200);
  ASSERT_EQ(stack_->StatusOf("twopc-done"), "committed");
  // Unfinished: a client-driven TCC transaction whose try ran at inventory-svc; the try's row is
  // what its confirm (or cancel) will need, however long the client takes.
  ASSERT_EQ(Post("/v1/transactions", R"({"gid":"tcc-open","mode":"tcc","timeout":"10m"})").status,
            201);
  ASSERT_EQ(Post("/v1/transactions/tcc-open/branches",
                 stack_->InventoryTccBranch("stock", "A1", 2, /*with_try=*/false))
                .status,
            201);
  auto tried = HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/tcc/try"),
                        TreatyStack::OpBody("tcc-open", "stock", "try", "tcc", "A1", 2));
  ASSERT_TRUE(tried.ok() && tried->status == 200) << (tried.ok() ? tried->body : "");
  ASSERT_EQ(stack_->Stock("A1").value(), "96/2/2")
      << "two sold (tcc-done, twopc-done), two reserved";

  // Inbox rows: one past the dedupe window, one inside it.
  ASSERT_OK(stack_->pg().Execute("inventory",
                                 "INSERT INTO treaty_inbox (event_id, topic, received_at) VALUES "
                                 "('ev-old', 'orders.events', now() - interval '2 hours'), "
                                 "('ev-young', 'orders.events', now() - interval '30 minutes')"));
  ASSERT_EQ(Count("inventory",
                  "SELECT count(*) FROM treaty_barrier WHERE gid IN ('tcc-done', 'tcc-open')"),
            3)
      << "tcc-done: try and confirm; tcc-open: try";
  ASSERT_EQ(Count("inventory", "SELECT count(*) FROM treaty_2pc_branches WHERE gid = 'twopc-done'"),
            1);

  // Everything two hours old, at the coordinator first: a participant's rows are never older
  // than their transaction (the kit relies on it when it lists only old unfinished ones).
  ASSERT_OK(stack_->pg().Execute(
      "treaty",
      "UPDATE treaty.transactions SET created_at = now() - interval '2 hours', "
      "updated_at = now() - interval '2 hours'"));
  ASSERT_OK(stack_->pg().Execute(
      "inventory",
      "UPDATE treaty_barrier SET created_at = now() - interval '2 hours'; "
      "UPDATE treaty_2pc_branches SET updated_at = now() - interval '2 hours'"));

  ASSERT_TRUE(WaitUntil(
      [&] {
        return Count("inventory",
                     "SELECT (SELECT count(*) FROM treaty_barrier WHERE gid = 'tcc-done') + "
                     "(SELECT count(*) FROM treaty_2pc_branches WHERE gid = 'twopc-done') + "
                     "(SELECT count(*) FROM treaty_inbox WHERE event_id = 'ev-old')") == 0;
      },
      kWait))
      << "the finished transactions' rows and the old inbox row were not purged";
  // The round that deleted tcc-done's rows walked past tcc-open's (just as old) and kept them:
  // a gid the coordinator lists as unfinished keeps every row.
  Service& inv = stack_->inventory();
  ASSERT_TRUE(WaitUntil(
      [&] {
        return Metric(inv,
                      R"(treaty_participant_retention_purged_rows_total{table="treaty_inbox"})") ==
               1;
      },
      kWait));
  EXPECT_EQ(Query("inventory",
                  "SELECT string_agg(op || '/' || written_by, ',') FROM treaty_barrier WHERE "
                  "gid = 'tcc-open'"),
            "try/try")
      << "the try of an unfinished transaction is kept, however old";
  EXPECT_EQ(Query("inventory", "SELECT string_agg(event_id, ',') FROM treaty_inbox"), "ev-young")
      << "an inbox row inside its dedupe window is kept";
  EXPECT_EQ(
      Metric(inv, R"(treaty_participant_retention_purged_rows_total{table="treaty_barrier"})"), 2);
  EXPECT_EQ(
      Metric(inv, R"(treaty_participant_retention_purged_rows_total{table="treaty_2pc_branches"})"),
      1);
  const double oldest_inbox =
      Metric(inv, R"(treaty_participant_retention_oldest_age_seconds{table="treaty_inbox"})");
  EXPECT_GT(oldest_inbox, 1700);
  EXPECT_LT(oldest_inbox, 3600);

  // The kept row does its job: the client submits, and the confirm sells what the try reserved.
  auto done = Post("/v1/transactions/tcc-open/submit", R"({"wait":true})");
  ASSERT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(ParseObject(done.body)->getValue<std::string>("status"), "committed");
  EXPECT_EQ(stack_->Stock("A1").value(), "96/0/4");
}

// treaty-relay's retention: sent rows past `retention` go, a batch at a time; pending and dead
// rows never do, whatever their age.
class RelayRetentionTest : public OutboxFixture {};

TEST_F(RelayRetentionTest, DeletesOnlySentRowsPastTheRetentionInBatches) {
  // Five sent two days ago, one sent an hour ago, one dead for three days.
  std::string rows;
  for (int i = 1; i <= 7; ++i) {
    const std::string status = i <= 6 ? "sent" : "dead";
    const std::string age = i <= 5 ? "2 days" : i == 6 ? "1 hour" : "3 days";
    rows += std::string(rows.empty() ? "" : ", ") + "('ev-" + std::to_string(i) + "', 'order', 'o" +
            std::to_string(i) + "', 'OrderPlaced', '" + kTopic + "', '{}', '" + status +
            "', now() - interval '" + age + "', now() - interval '" + age + "')";
  }
  ASSERT_OK(pg_->Execute("orders",
                         "INSERT INTO treaty_outbox (event_id, aggregate_type, aggregate_id, "
                         "event_type, topic, payload, status, created_at, sent_at) VALUES " +
                             rows));
  auto relay = Service::Start(ServiceSpec{.name = "treaty-relay",
                                          .binary = kRelayPath,
                                          .config_yaml = "listen: 127.0.0.1:0\n"
                                                         "database: { url: \"" +
                                                         pg_->Url("orders") +
                                                         "\" }\n"
                                                         "kafka: { bootstrap_servers: \"" +
                                                         broker_->bootstrap() +
                                                         "\" }\n"
                                                         "poll_interval: 200ms\n"
                                                         "retention: 1d\n"
                                                         "retention_batch: 2\n"});
  ASSERT_TRUE(relay.ok()) << relay.status().message();
  auto left = [&] {
    auto v = pg_->QueryValue("orders",
                             "SELECT string_agg(event_id || '=' || status, ',' ORDER BY event_id) "
                             "FROM treaty_outbox");
    return v.ok() ? *v : v.status().message();
  };
  EXPECT_TRUE(WaitUntil([&] { return left() == "ev-6=sent,ev-7=dead"; }, kWait)) << left();
  auto metrics = HttpCall("GET", (*relay)->base_url() + "/metrics");
  ASSERT_TRUE(metrics.ok() && metrics->status == 200);
  EXPECT_NE(metrics->body.find("treaty_relay_purged_rows_total 5\n"), std::string::npos)
      << metrics->body;
  const size_t at = metrics->body.find("\ntreaty_relay_oldest_sent_age_seconds ");
  ASSERT_NE(at, std::string::npos) << metrics->body;
  const double oldest = std::stod(
      metrics->body.substr(at + std::string("\ntreaty_relay_oldest_sent_age_seconds ").size()));
  EXPECT_GT(oldest, 3000);
  EXPECT_LT(oldest, 86400);
}

}  // namespace
}  // namespace treaty::harness
