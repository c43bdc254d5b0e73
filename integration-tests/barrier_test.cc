// The participant barrier against a real PostgreSQL: idempotency, null compensation, hanging,
// and concurrent duplicates, each checked on the business table the ops change.

#include "tcc/barrier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "integration-tests/harness/pg_cluster.h"

namespace treaty::harness {
namespace {

using participant::Barrier;
using participant::BranchRequest;
using participant::OpReply;

class BarrierTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto pg = PgCluster::Start();
    ASSERT_TRUE(pg.ok()) << pg.status().message();
    pg_ = pg->release();
    ASSERT_TRUE(pg_->CreateDatabase("svc").ok());
    ASSERT_TRUE(pg_->Execute("svc", Barrier::SchemaSql()).ok());
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

  // Runs one op through the barrier in its own transaction, like a participant handler:
  // try freezes 10, confirm spends the frozen 10, cancel unfreezes it.
  OpReply Op(const std::string& op, Barrier::Outcome* outcome = nullptr) {
    pqxx::connection c(pg_->ConnectionString("svc"));
    pqxx::work tx(c);
    BranchRequest r;
    r.gid = "g1";
    r.branch_id = "b1";
    r.op = op;
    r.mode = "tcc";
    OpReply reply = Barrier::Run(
        tx, r,
        [&](pqxx::work& w) {
          if (op == "try") {
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

TEST_F(BarrierTest, RepeatedOpsApplyOnce) {
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

TEST_F(BarrierTest, RepeatedCancelAppliesOnce) {
  Op("try");
  Barrier::Outcome o;
  EXPECT_EQ(Op("cancel", &o).status, 200);
  EXPECT_EQ(o, Barrier::Outcome::kApplied);
  EXPECT_EQ(Op("cancel", &o).status, 200);
  EXPECT_EQ(o, Barrier::Outcome::kDuplicate);
  EXPECT_EQ(Account(), "100/0");
}

TEST_F(BarrierTest, CancelWithoutTryIsNullCompensation) {
  Barrier::Outcome o;
  EXPECT_EQ(Op("cancel", &o).status, 200);
  EXPECT_EQ(o, Barrier::Outcome::kNullCompensation);
  EXPECT_EQ(Account(), "100/0") << "nothing was frozen, so nothing may be released";
}

TEST_F(BarrierTest, TryAfterItsCancelIsRefused) {
  Op("cancel");
  Barrier::Outcome o;
  EXPECT_EQ(Op("try", &o).status, 409);
  EXPECT_EQ(o, Barrier::Outcome::kHanging);
  EXPECT_EQ(Account(), "100/0") << "a late try must not freeze what nobody will release";
}

TEST_F(BarrierTest, RowsRollBackWithTheBusinessChange) {
  {
    pqxx::connection c(pg_->ConnectionString("svc"));
    pqxx::work tx(c);
    BranchRequest r;
    r.gid = "g1";
    r.branch_id = "b1";
    r.op = "try";
    OpReply reply = Barrier::Run(tx, r, [](pqxx::work&) { return OpReply{409, "insufficient"}; });
    EXPECT_EQ(reply.status, 409);
    tx.abort();  // what a handler does on a refusal
  }
  EXPECT_EQ(pg_->QueryValue("svc", "SELECT count(*) FROM treaty_barrier").value(), "0");
  Barrier::Outcome o;
  Op("try", &o);
  EXPECT_EQ(o, Barrier::Outcome::kApplied) << "a refused try left no row: it may run again";
}

TEST_F(BarrierTest, ConcurrentDuplicatesApplyOnce) {
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

TEST_F(BarrierTest, ConcurrentCancelAndTryNeverBothApply) {
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

}  // namespace
}  // namespace treaty::harness
