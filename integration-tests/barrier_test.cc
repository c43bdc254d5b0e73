// The participant barrier against a real PostgreSQL: idempotency, null compensation, hanging,
// and concurrent duplicates, each checked on the business table the ops change. One list of
// cases runs against both barriers: the C++ kit's (Kit/..., label tcc) and the SQL one that
// `treatyctl barrier install` puts in a service's database (Sql/..., label interop), both on the
// same table, as a service mixing them would have it.

#include "tcc/barrier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/test_support.h"
#include "tcc/barrier_sql.h"

namespace treaty::harness {
namespace {

using participant::Barrier;
using participant::BranchRequest;
using participant::OpReply;
using participant::SqlBarrier;
using Change = std::function<OpReply(pqxx::work&)>;

// The SQL barrier as a participant in another language uses it: one SELECT, then the change
// only when it says 'applied'; the same answers as the kit's.
OpReply SqlBarrierRun(pqxx::work& tx, const BranchRequest& r, const Change& change,
                      Barrier::Outcome* outcome) {
  std::string said =
      tx.exec_params1("SELECT treaty.barrier_enter($1, $2, $3)", r.gid, r.branch_id, r.op)[0]
          .as<std::string>();
  Barrier::Outcome o = said == "applied"             ? Barrier::Outcome::kApplied
                       : said == "duplicate"         ? Barrier::Outcome::kDuplicate
                       : said == "null_compensation" ? Barrier::Outcome::kNullCompensation
                       : said == "hanging"           ? Barrier::Outcome::kHanging
                                                     : throw std::runtime_error("said " + said);
  if (outcome) *outcome = o;
  if (o == Barrier::Outcome::kHanging) return OpReply{409, Barrier::OutcomeName(o)};
  if (o != Barrier::Outcome::kApplied) return OpReply{200, Barrier::OutcomeName(o)};
  return change(tx);
}

// "kit" or "sql": which barrier the cases run against.
class BarrierTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    auto pg = PgCluster::Start();
    ASSERT_TRUE(pg.ok()) << pg.status().message();
    pg_ = pg->release();
    ASSERT_TRUE(pg_->CreateDatabase("svc").ok());
    // Both, in either order, on one table: the kit's DDL, then the SQL barrier's installation
    // twice (it is idempotent).
    ASSERT_TRUE(pg_->Execute("svc", Barrier::SchemaSql()).ok());
    ASSERT_OK(pg_->Execute("svc", SqlBarrier::Script()));
    ASSERT_OK(pg_->Execute("svc", SqlBarrier::Script()));
    ASSERT_TRUE(
        pg_->Execute("svc", "CREATE TABLE account (id int PRIMARY KEY, balance int, frozen int)")
            .ok());
  }
  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(pg_->Execute("svc",
                             "TRUNCATE treaty_barrier; DELETE FROM account; "
                             "INSERT INTO account VALUES (1, 100, 0)")
                    .ok());
  }

  // The barrier under test.
  static OpReply Run(pqxx::work& tx, const BranchRequest& r, const Change& change,
                     Barrier::Outcome* outcome = nullptr) {
    if (GetParam() == "sql") return SqlBarrierRun(tx, r, change, outcome);
    return Barrier::Run(tx, r, change, outcome);
  }

  // Runs one op through the barrier in its own transaction, like a participant handler:
  // try freezes 10, confirm spends the frozen 10, cancel unfreezes it (saga: action, compensate).
  OpReply Op(const std::string& op, Barrier::Outcome* outcome = nullptr) {
    pqxx::connection c(pg_->ConnectionString("svc"));
    pqxx::work tx(c);
    BranchRequest r;
    r.gid = "g1";
    r.branch_id = "b1";
    r.op = op;
    r.mode = "tcc";
    OpReply reply = Run(
        tx, r,
        [&](pqxx::work& w) {
          if (op == "try" || op == "action") {
            w.exec("UPDATE account SET balance = balance - 10, frozen = frozen + 10 WHERE id = 1");
          } else if (op == "confirm") {
            w.exec("UPDATE account SET frozen = frozen - 10 WHERE id = 1");
          } else {
            w.exec("UPDATE account SET balance = balance + 10, frozen = frozen - 10 WHERE id = 1");
          }
          return OpReply{200, "done"};
        },
        outcome);
    tx.commit();
    return reply;
  }

  std::string Account() {
    return pg_->QueryValue("svc", "SELECT balance || '/' || frozen FROM account WHERE id = 1")
        .value();
  }

  static PgCluster* pg_;
};

PgCluster* BarrierTest::pg_ = nullptr;

TEST_P(BarrierTest, RepeatedOpsApplyOnce) {
  Barrier::Outcome o;
  EXPECT_EQ(Op("try", &o).status, 200);
  EXPECT_EQ(o, Barrier::Outcome::kApplied);
  EXPECT_EQ(Op("try", &o).status, 200);
  EXPECT_EQ(o, Barrier::Outcome::kDuplicate);
  EXPECT_EQ(Account(), "90/10");
  EXPECT_EQ(Op("confirm", &o).status, 200);
  EXPECT_EQ(Op("confirm", &o).status, 200);
  EXPECT_EQ(o, Barrier::Outcome::kDuplicate);
  EXPECT_EQ(Account(), "90/0");
}

TEST_P(BarrierTest, RepeatedCancelAppliesOnce) {
  Op("try");
  Barrier::Outcome o;
  EXPECT_EQ(Op("cancel", &o).status, 200);
  EXPECT_EQ(o, Barrier::Outcome::kApplied);
  EXPECT_EQ(Op("cancel", &o).status, 200);
  EXPECT_EQ(o, Barrier::Outcome::kDuplicate);
  EXPECT_EQ(Account(), "100/0");
}

TEST_P(BarrierTest, CancelWithoutTryIsNullCompensation) {
  Barrier::Outcome o;
  EXPECT_EQ(Op("cancel", &o).status, 200);
  EXPECT_EQ(o, Barrier::Outcome::kNullCompensation);
  EXPECT_EQ(Account(), "100/0") << "nothing was frozen, so nothing may be released";
}

TEST_P(BarrierTest, TryAfterItsCancelIsRefused) {
  Op("cancel");
  Barrier::Outcome o;
  EXPECT_EQ(Op("try", &o).status, 409);
  EXPECT_EQ(o, Barrier::Outcome::kHanging);
  EXPECT_EQ(Account(), "100/0") << "a late try must not freeze what nobody will release";
}

TEST_P(BarrierTest, RowsRollBackWithTheBusinessChange) {
  {
    pqxx::connection c(pg_->ConnectionString("svc"));
    pqxx::work tx(c);
    BranchRequest r;
    r.gid = "g1";
    r.branch_id = "b1";
    r.op = "try";
    OpReply reply = Run(tx, r, [](pqxx::work&) { return OpReply{409, "insufficient"}; });
    EXPECT_EQ(reply.status, 409);
    tx.abort();  // what a handler does on a refusal
  }
  EXPECT_EQ(pg_->QueryValue("svc", "SELECT count(*) FROM treaty_barrier").value(), "0");
  Barrier::Outcome o;
  Op("try", &o);
  EXPECT_EQ(o, Barrier::Outcome::kApplied) << "a refused try left no row: it may run again";
}

TEST_P(BarrierTest, ConcurrentDuplicatesApplyOnce) {
  for (const std::string op : {"try", "confirm"}) {
    std::atomic<int> applied{0}, failed{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&] {
        try {
          Barrier::Outcome o;
          if (Op(op, &o).status == 200 && o == Barrier::Outcome::kApplied) ++applied;
        } catch (const std::exception&) {
          ++failed;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(applied, 1) << op;
    EXPECT_EQ(failed, 0) << op;
  }
  EXPECT_EQ(Account(), "90/0");
}

TEST_P(BarrierTest, ConcurrentCancelAndTryNeverBothApply) {
  for (int round = 0; round < 20; ++round) {
    SetUp();
    std::thread cancel([&] { Op("cancel"); });
    std::thread try_op([&] { Op("try"); });
    cancel.join();
    try_op.join();
    // Either the try ran and the cancel undid it, or the cancel came first and the try was
    // refused: in both cases nothing stays frozen.
    EXPECT_EQ(Account(), "100/0") << "round " << round;
  }
}

TEST_P(BarrierTest, CompensateWithoutActionIsNullCompensationAndRefusesTheLateAction) {
  Barrier::Outcome o;
  EXPECT_EQ(Op("compensate", &o).status, 200);
  EXPECT_EQ(o, Barrier::Outcome::kNullCompensation);
  EXPECT_EQ(Op("action", &o).status, 409);
  EXPECT_EQ(o, Barrier::Outcome::kHanging);
  EXPECT_EQ(Account(), "100/0");
}

INSTANTIATE_TEST_SUITE_P(Kit, BarrierTest, ::testing::Values("kit"));
INSTANTIATE_TEST_SUITE_P(Sql, BarrierTest, ::testing::Values("sql"));

// The two barriers on one table: a try through the kit, its cancel through SQL, and back.
TEST(SqlBarrierTest, SharesTheKitsRows) {
  auto pg = PgCluster::Start();
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  ASSERT_OK((*pg)->CreateDatabase("svc"));
  ASSERT_OK((*pg)->Execute("svc", SqlBarrier::Script()));
  EXPECT_EQ((*pg)->QueryValue("svc", "SELECT treaty.barrier_version()").value(),
            std::to_string(SqlBarrier::kVersion));
  auto op = [&](bool sql, const std::string& gid, const std::string& name) {
    pqxx::connection c((*pg)->ConnectionString("svc"));
    pqxx::work tx(c);
    BranchRequest r{.gid = gid, .branch_id = "b", .op = name, .mode = "tcc"};
    Barrier::Outcome o;
    auto change = [](pqxx::work&) { return OpReply{200, "done"}; };
    if (sql) {
      SqlBarrierRun(tx, r, change, &o);
    } else {
      Barrier::Run(tx, r, change, &o);
    }
    tx.commit();
    return o;
  };
  EXPECT_EQ(op(false, "k", "try"), Barrier::Outcome::kApplied);
  EXPECT_EQ(op(true, "k", "try"), Barrier::Outcome::kDuplicate);
  EXPECT_EQ(op(true, "k", "cancel"), Barrier::Outcome::kApplied) << "the kit's try is seen";
  EXPECT_EQ(op(true, "s", "cancel"), Barrier::Outcome::kNullCompensation);
  EXPECT_EQ(op(false, "s", "try"), Barrier::Outcome::kHanging) << "the SQL cancel's mark is seen";
}

// The functions' search_path is pinned: a table of the same name earlier on the caller's path
// does not stand in for the barrier's.
TEST(SqlBarrierTest, AnotherSchemaOnTheSearchPathCannotStandIn) {
  auto pg = PgCluster::Start();
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  ASSERT_OK((*pg)->CreateDatabase("svc"));
  ASSERT_OK((*pg)->Execute("svc", SqlBarrier::Script()));
  ASSERT_OK((*pg)->Execute(
      "svc",
      "CREATE SCHEMA shadow; CREATE TABLE shadow.treaty_barrier (LIKE public.treaty_barrier "
      "INCLUDING ALL)"));
  {
    pqxx::connection c((*pg)->ConnectionString("svc"));
    pqxx::work tx(c);
    tx.exec("SET LOCAL search_path = shadow, public");
    EXPECT_EQ(tx.exec1("SELECT treaty.barrier_enter('g', 'b', 'try')")[0].as<std::string>(),
              "applied");
    tx.commit();
  }
  EXPECT_EQ((*pg)->QueryValue("svc", "SELECT count(*) FROM public.treaty_barrier").value(), "1");
  EXPECT_EQ((*pg)->QueryValue("svc", "SELECT count(*) FROM shadow.treaty_barrier").value(), "0");
}

// Installs at once (several instances of a service starting, each running it) do not collide.
TEST(SqlBarrierTest, ConcurrentInstallsAllSucceed) {
  auto pg = PgCluster::Start();
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  ASSERT_OK((*pg)->CreateDatabase("svc"));
  for (int round = 0; round < 3; ++round) {
    ASSERT_OK((*pg)->Execute("svc",
                             "DROP SCHEMA IF EXISTS treaty CASCADE; "
                             "DROP TABLE IF EXISTS public.treaty_barrier"));
    std::atomic<int> failed{0};
    std::vector<std::thread> installs;
    for (int i = 0; i < 4; ++i) {
      installs.emplace_back([&] {
        try {
          pqxx::connection c((*pg)->ConnectionString("svc"));
          pqxx::nontransaction sql(c);
          sql.exec(SqlBarrier::Script());
        } catch (const std::exception& e) {
          ADD_FAILURE() << e.what();
          ++failed;
        }
      });
    }
    for (auto& t : installs) t.join();
    EXPECT_EQ(failed, 0) << "round " << round;
  }
  EXPECT_EQ((*pg)->QueryValue("svc", "SELECT treaty.barrier_version()").value(), "1");
}

// Installed by one role, used by the service's own: the grants docs/participants.md lists are
// enough, and without them the call is refused (the functions run with the caller's rights).
TEST(SqlBarrierTest, AServiceRoleNeedsOnlyTheDocumentedGrants) {
  auto pg = PgCluster::Start();
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  ASSERT_OK((*pg)->CreateDatabase("svc"));
  ASSERT_OK((*pg)->Execute("svc", SqlBarrier::Script()));
  ASSERT_OK((*pg)->Execute("svc", "CREATE ROLE svc_role LOGIN"));
  std::string as_service = (*pg)->ConnectionString("svc");
  as_service.replace(as_service.find("user=postgres"), 13, "user=svc_role");
  auto enter = [&](const std::string& gid) {
    pqxx::connection c(as_service);
    pqxx::work tx(c);
    std::string said =
        tx.exec_params1("SELECT treaty.barrier_enter($1, 'b', 'cancel')", gid)[0].as<std::string>();
    tx.commit();
    return said;
  };
  EXPECT_THROW(enter("g1"), pqxx::insufficient_privilege);
  ASSERT_OK((*pg)->Execute("svc",
                           "GRANT USAGE ON SCHEMA treaty TO svc_role; "
                           "GRANT SELECT, INSERT ON public.treaty_barrier TO svc_role; "
                           "GRANT USAGE ON SEQUENCE public.treaty_barrier_seq_seq TO svc_role"));
  EXPECT_EQ(enter("g2"), "null_compensation");
}

// Bad input is an error naming what is wrong, never a silent skip or an applied op.
TEST(SqlBarrierTest, RefusesAnUnknownOpAndEmptyIds) {
  auto pg = PgCluster::Start();
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  ASSERT_OK((*pg)->CreateDatabase("svc"));
  ASSERT_OK((*pg)->Execute("svc", SqlBarrier::Script()));
  pqxx::connection c((*pg)->ConnectionString("svc"));
  for (auto [gid, branch, op, names] : {std::tuple{"g", "b", "frobnicate", "op must be"},
                                        {"", "b", "try", "gid is required"},
                                        {"g", "", "try", "branch_id is required"}}) {
    pqxx::work tx(c);
    try {
      tx.exec_params("SELECT treaty.barrier_enter($1, $2, $3)", gid, branch, op);
      ADD_FAILURE() << op << " was accepted";
    } catch (const pqxx::sql_error& e) {
      EXPECT_EQ(e.sqlstate(), "22023");
      EXPECT_NE(std::string(e.what()).find(names), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ((*pg)->QueryValue("svc", "SELECT count(*) FROM treaty_barrier").value(), "0");
}

}  // namespace
}  // namespace treaty::harness
