// The store's contract (coordinator/core/store.h), method by method, run against every
// implementation: the PostgreSQL store on a throwaway cluster, the in-memory store the core's
// unit tests use, and the routing store over two PostgreSQL shards (store.shards). What one
// does the others must do: a difference is a bug in the one that breaks the header's contract.
// Leases are the store's: PostgreSQL's clock, or the in-memory store's own.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "coordinator/core/state_machine.h"
#include "coordinator/core/testing/in_memory_store.h"
#include "coordinator/store/pg_store.h"
#include "coordinator/store/pg_transaction_store.h"
#include "coordinator/store/sharded_store.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/test_support.h"

namespace treaty::harness {
namespace {

using core::BranchOp;
using core::Fence;
using core::OpStatus;
using core::TxStatus;
using std::chrono::milliseconds;
using std::chrono::seconds;

core::Transaction Saga(const std::string& gid) {
  core::Transaction tx;
  tx.gid = gid;
  tx.mode = core::Mode::kSaga;
  tx.submitted = true;
  tx.created_at = tx.updated_at = tx.next_attempt_at = std::chrono::system_clock::now();
  tx.deadline = tx.created_at + seconds(60);
  for (const char* step : {"x", "y"}) {
    for (const char* op : {"action", "compensate"}) {
      tx.ops.push_back(BranchOp{.branch_id = step, .op = op, .url = "http://p/" + std::string(op)});
    }
  }
  return tx;
}

BranchOp Op(const std::string& branch, const std::string& op, OpStatus status, int attempts) {
  BranchOp o{.branch_id = branch, .op = op};
  o.status = status;
  o.attempts = attempts;
  return o;
}

// Milliseconds since the epoch: what PostgreSQL keeps of a time.
core::TimePoint Now() {
  return std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now());
}

// A transaction of `mode` in `status` with one branch "b" of `ops`.
core::Transaction Tx(const std::string& gid, core::Mode mode, TxStatus status,
                     std::vector<std::string> ops) {
  core::Transaction tx;
  tx.gid = gid;
  tx.mode = mode;
  tx.status = status;
  tx.submitted = true;
  tx.created_at = tx.updated_at = tx.next_attempt_at = Now();
  tx.deadline = tx.created_at + seconds(60);
  for (const std::string& op : ops) {
    tx.ops.push_back(BranchOp{.branch_id = "b", .op = op, .url = "http://p/b/" + op});
  }
  return tx;
}

std::vector<std::string> Gids(const std::vector<core::Transaction>& txs) {
  std::vector<std::string> out;
  for (const auto& tx : txs) out.push_back(tx.gid);
  return out;
}

using Strings = std::vector<std::string>;

class StoreContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  // One cluster for the suite's PostgreSQL tests (started by the first), a fresh database for
  // each test.
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    if (GetParam() == "memory") {
      store_ = std::make_unique<core::testing::InMemoryStore>();
      return;
    }
    if (cluster_ == nullptr) {
      auto pg = PgCluster::Start();
      ASSERT_TRUE(pg.ok()) << pg.status().message();
      cluster_ = (*pg).release();
    }
    pg_ = cluster_;
    // "sharded": the routing store over two databases (two shards), which must keep the same
    // contract as one.
    const int shards = GetParam() == "sharded" ? 2 : 1;
    for (int i = 0; i < shards; ++i) {
      databases_of_test_.push_back("treaty_" + std::to_string(++databases_));
      const std::string& db = databases_of_test_.back();
      ASSERT_OK(pg_->CreateDatabase(db));
      store::PgStore schema(pg_->Url(db), seconds(5));
      ASSERT_OK(schema.Connect());
      ASSERT_TRUE(schema.Migrate().ok());
      shard_stores_.push_back(std::make_unique<store::PgTransactionStore>(
          store::PgStoreOptions{.url = pg_->Url(db), .pool_size = 4}));
    }
    database_ = databases_of_test_.front();
    if (shards == 1) {
      store_ = std::move(shard_stores_.front());
      shard_stores_.clear();
      return;
    }
    std::vector<store::StoreShard> parts;
    for (auto& s : shard_stores_) parts.push_back({s.get(), s.get()});
    auto sharded = std::make_unique<store::ShardedStore>(std::move(parts), store::SlotMap::Even(2));
    sharded->SetReady(0);
    sharded->SetReady(1);
    store_ = std::move(sharded);
  }
  void TearDown() override {
    store_.reset();
    shard_stores_.clear();
  }

  core::Transaction Load(const std::string& gid, bool with_log = false) {
    return store_->Load(gid, with_log).value();
  }
  // When the lease on `gid` ends, as the store keeps it.
  core::TimePoint LeaseUntil(const std::string& gid) {
    if (!pg_) return static_cast<core::testing::InMemoryStore&>(*store_).LeaseUntil(gid);
    const std::string db =
        databases_of_test_.size() == 1
            ? database_
            : databases_of_test_.at(static_cast<size_t>(store::SlotMap::Even(2).ShardOf(gid)));
    auto ms = pg_->QueryValue(db,
                              "SELECT (extract(epoch FROM lease_until) * 1000)::bigint FROM "
                              "treaty.transactions WHERE gid = '" +
                                  gid + "'");
    return core::TimePoint(milliseconds(std::stoll(ms.value())));
  }
  OpStatus StatusOf(const std::string& gid, const std::string& branch, const std::string& op) {
    return Load(gid).FindOp(branch, op)->status;
  }
  void Create(const core::Transaction& tx, const std::string& owner = "node-a",
              Duration lease = seconds(30)) {
    auto r = store_->Create(tx, owner, lease);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->created) << tx.gid;
  }

  static PgCluster* cluster_;
  static int databases_;
  PgCluster* pg_ = nullptr;  // the suite's cluster, for the PostgreSQL store
  std::string database_;
  std::vector<std::string> databases_of_test_;
  std::vector<std::unique_ptr<store::PgTransactionStore>> shard_stores_;
  std::unique_ptr<core::TransactionStore> store_;
};

PgCluster* StoreContractTest::cluster_ = nullptr;
int StoreContractTest::databases_ = 0;

TEST_P(StoreContractTest, OnlyTheLeaseHolderWritesAndEachWriteRenewsItsLease) {
  const Fence a{"node-a", seconds(30)};
  const Fence b{"node-b", seconds(30)};
  ASSERT_TRUE(store_->Create(Saga("c1"), a.owner, a.lease).ok());
  EXPECT_FALSE(store_->TryLease("c1", b.owner, b.lease).value()) << "a's lease is running";
  // Each fenced write renews a's lease to the store's now plus the lease it names: an hour...
  const core::TimePoint created_until = LeaseUntil("c1");
  ASSERT_OK(store_->RecordOps("c1", {}, std::chrono::system_clock::now(),
                              Fence{a.owner, std::chrono::hours(1)}));
  EXPECT_GT(LeaseUntil("c1"), created_until + std::chrono::minutes(59)) << "not renewed";
  EXPECT_FALSE(store_->TryLease("c1", b.owner, b.lease).value()) << "renewed leases still run";
  // ...or 300 ms; then a stops writing: its lease runs out, b takes over, and every write of a
  // is refused.
  ASSERT_OK(store_->RecordOps("c1", {}, std::chrono::system_clock::now(),
                              Fence{a.owner, milliseconds(300)}));
  EXPECT_LT(LeaseUntil("c1"), created_until) << "the renewal did not set the lease it named";
  ASSERT_TRUE(
      WaitUntil([&] { return store_->TryLease("c1", b.owner, b.lease).value(); }, seconds(10)));
  auto now = std::chrono::system_clock::now();
  EXPECT_EQ(store_->RecordOps("c1", {Op("x", "action", OpStatus::kSucceeded, 1)}, now, a).code(),
            Status::Code::kLeaseLost);
  EXPECT_EQ(store_->Transition("c1", TxStatus::kActive, TxStatus::kCommitted, "stale", now, {}, &a)
                .code(),
            Status::Code::kLeaseLost);
  EXPECT_EQ(store_->SetAttention("c1", "stale", &a).code(), Status::Code::kLeaseLost);
  core::Transaction tx = Load("c1");
  EXPECT_EQ(tx.status, TxStatus::kActive);
  EXPECT_EQ(tx.attention, "");
  EXPECT_EQ(tx.FindOp("x", "action")->attempts, 0);
  // b's writes go through; a client's move needs no lease.
  EXPECT_TRUE(store_->RecordOps("c1", {Op("x", "action", OpStatus::kSucceeded, 1)}, now, b).ok());
  EXPECT_TRUE(
      store_->Transition("c1", TxStatus::kActive, TxStatus::kAborting, "client", now, {}, nullptr)
          .ok());
  EXPECT_TRUE(
      store_->Transition("c1", TxStatus::kAborting, TxStatus::kAborted, "done", now, {}, &b).ok());
}

TEST_P(StoreContractTest, ALeaseGivenBackFencesTheDriveThatGaveItBack) {
  const Fence a{"node-a", seconds(30)};
  ASSERT_TRUE(store_->Create(Saga("c3"), a.owner, a.lease).ok());
  // The drive waits for a retry and gives its lease back; a late write of the same drive (or
  // of a paused twin) must not pass the fence.
  ASSERT_TRUE(store_->Reschedule("c3", a.owner, std::chrono::system_clock::now()).ok());
  auto now = std::chrono::system_clock::now();
  EXPECT_EQ(
      store_->Transition("c3", TxStatus::kActive, TxStatus::kAborting, "late", now, {}, &a).code(),
      Status::Code::kLeaseLost);
  EXPECT_EQ(store_->RecordOps("c3", {}, now, a).code(), Status::Code::kLeaseLost);
  EXPECT_EQ(store_->SetAttention("c3", "late", &a).code(), Status::Code::kLeaseLost);
  EXPECT_EQ(Load("c3").status, TxStatus::kActive);
}

TEST_P(StoreContractTest, RecordedOutcomesOnlyMoveForward) {
  const Fence a{"node-a", seconds(30)};
  ASSERT_TRUE(store_->Create(Saga("c2"), a.owner, a.lease).ok());
  auto now = std::chrono::system_clock::now();
  ASSERT_OK(store_->RecordOps(
      "c2", {Op("x", "action", OpStatus::kSucceeded, 2), Op("y", "action", OpStatus::kRefused, 1)},
      now, a));
  // A stale or repeated write says pending for both: neither goes back.
  ASSERT_OK(store_->RecordOps(
      "c2", {Op("x", "action", OpStatus::kPending, 1), Op("y", "action", OpStatus::kPending, 1)},
      now, a));
  EXPECT_EQ(StatusOf("c2", "x", "action"), OpStatus::kSucceeded);
  EXPECT_EQ(StatusOf("c2", "y", "action"), OpStatus::kRefused);
  // A refused op retried with no answer stays refused, but counts its attempts on (its backoff
  // grows with them).
  ASSERT_TRUE(store_->RecordOps("c2", {Op("y", "action", OpStatus::kPending, 4)}, now, a).ok());
  EXPECT_EQ(StatusOf("c2", "y", "action"), OpStatus::kRefused);
  EXPECT_EQ(Load("c2").FindOp("y", "action")->attempts, 4);
  // The same through a transition's recorded ops.
  ASSERT_OK(store_->Transition("c2", TxStatus::kActive, TxStatus::kAborting, "y refused", now,
                               {Op("x", "action", OpStatus::kPending, 3)}, &a));
  EXPECT_EQ(StatusOf("c2", "x", "action"), OpStatus::kSucceeded);
  // A refusal can still turn into success (a compensation that refused, then succeeded).
  ASSERT_OK(store_->RecordOps("c2", {Op("y", "action", OpStatus::kSucceeded, 2)}, now, a));
  EXPECT_EQ(StatusOf("c2", "y", "action"), OpStatus::kSucceeded);
}

// ---- Create and Load ---------------------------------------------------------------------------

TEST_P(StoreContractTest, CreateStoresTheTransactionAsGivenOnceAndReturnsTheStoredOneAfter) {
  core::Transaction tx = Tx("t1", core::Mode::kTcc, TxStatus::kActive, {"try", "confirm"});
  tx.sequential = true;
  tx.request_digest = "digest-1";
  tx.definition = "";
  tx.ops[0].position = 0;
  tx.ops[0].timeout = milliseconds(1500);
  tx.ops[1].after = {"a", "c"};
  tx.ops[1].message_key = "k";
  tx.ops[1].message_headers = {{"h", "v"}};
  auto created = store_->Create(tx, "node-a", seconds(30));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_TRUE(created->created);

  core::Transaction stored = Load("t1", /*with_log=*/true);
  EXPECT_EQ(stored.gid, "t1");
  EXPECT_EQ(stored.mode, core::Mode::kTcc);
  EXPECT_EQ(stored.status, TxStatus::kActive);
  EXPECT_TRUE(stored.submitted);
  EXPECT_TRUE(stored.sequential);
  EXPECT_EQ(stored.request_digest, "digest-1");
  EXPECT_EQ(stored.deadline, tx.deadline);
  EXPECT_EQ(stored.next_attempt_at, tx.next_attempt_at);
  EXPECT_EQ(stored.created_at, tx.created_at);
  ASSERT_EQ(stored.ops.size(), 2u);
  const BranchOp* t = stored.FindOp("b", "try");
  const BranchOp* c = stored.FindOp("b", "confirm");
  ASSERT_TRUE(t && c);
  EXPECT_EQ(t->url, "http://p/b/try");
  EXPECT_EQ(t->timeout, std::optional<Duration>(milliseconds(1500)));
  EXPECT_EQ(t->status, OpStatus::kPending);
  EXPECT_EQ(c->after, (Strings{"a", "c"}));
  EXPECT_EQ(c->message_key, "k");
  EXPECT_EQ(c->message_headers, (std::map<std::string, std::string>{{"h", "v"}}));
  // Its first log row: no from, the status it was created in.
  ASSERT_EQ(stored.log.size(), 1u);
  EXPECT_EQ(stored.log[0].from, std::nullopt);
  EXPECT_EQ(stored.log[0].to, TxStatus::kActive);
  EXPECT_EQ(stored.log[0].at, tx.created_at);
  EXPECT_EQ(stored.log[0].reason, "begun with 1 branches");

  // The same gid again, whatever it says: nothing changes, the stored one comes back.
  core::Transaction again = Tx("t1", core::Mode::kSaga, TxStatus::kActive, {"action"});
  again.request_digest = "digest-2";
  auto existing = store_->Create(again, "node-b", seconds(30));
  ASSERT_TRUE(existing.ok());
  EXPECT_FALSE(existing->created);
  EXPECT_EQ(existing->existing.gid, "t1");
  EXPECT_EQ(existing->existing.mode, core::Mode::kTcc);
  EXPECT_EQ(existing->existing.request_digest, "digest-1");
  EXPECT_EQ(existing->existing.ops.size(), 2u);
  EXPECT_TRUE(existing->existing.log.empty());
  EXPECT_EQ(Load("t1").request_digest, "digest-1");
  EXPECT_EQ(Load("t1", true).log.size(), 1u);
}

TEST_P(StoreContractTest, CreateLeasesToItsCreatorOrToNobodyWithAZeroLease) {
  Create(Tx("mine", core::Mode::k2pc, TxStatus::kActive, {"prepare"}), "node-a", seconds(30));
  Create(Tx("anyone", core::Mode::k2pc, TxStatus::kActive, {"prepare"}), "node-a",
         Duration::zero());
  EXPECT_FALSE(store_->TryLease("mine", "node-b", seconds(30)).value());
  EXPECT_TRUE(store_->TryLease("anyone", "node-b", seconds(30)).value());
  EXPECT_EQ(store_->ClaimDue("node-c", Now() + seconds(1), seconds(30), 10).value(), Strings{})
      << "both are leased now";
}

TEST_P(StoreContractTest, LoadGivesTheLogOnlyWhenAskedAndNotFoundForAnUnknownGid) {
  Create(Tx("l1", core::Mode::kSaga, TxStatus::kActive, {"action"}));
  ASSERT_OK(
      store_->Transition("l1", TxStatus::kActive, TxStatus::kAborting, "why", Now(), {}, nullptr));
  EXPECT_TRUE(Load("l1").log.empty());
  core::Transaction tx = Load("l1", true);
  ASSERT_EQ(tx.log.size(), 2u);
  EXPECT_EQ(tx.log[1].from, std::optional<TxStatus>(TxStatus::kActive));
  EXPECT_EQ(tx.log[1].to, TxStatus::kAborting);
  EXPECT_EQ(tx.log[1].reason, "why");
  EXPECT_EQ(store_->Load("nope", false).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(store_->Load("nope", true).status().code(), Status::Code::kNotFound);
}

// ---- AddBranch and MarkSubmitted ---------------------------------------------------------------

TEST_P(StoreContractTest, BranchesAreAddedOnlyWhileActiveAndNotSubmitted) {
  core::Transaction tx = Tx("a1", core::Mode::kTcc, TxStatus::kActive, {});
  tx.submitted = false;
  Create(tx);
  auto branch = [](const std::string& id, int position, const std::vector<std::string>& ops) {
    std::vector<BranchOp> out;
    for (const std::string& op : ops) {
      out.push_back(BranchOp{.branch_id = id, .op = op, .position = position, .url = "u"});
    }
    return out;
  };
  ASSERT_OK(store_->AddBranch("a1", branch("x", 0, {"try", "confirm", "cancel"})));
  ASSERT_OK(store_->AddBranch("a1", branch("y", 1, {"try", "confirm", "cancel"})));
  core::Transaction stored = Load("a1");
  EXPECT_EQ(stored.ops.size(), 6u);
  EXPECT_EQ(stored.BranchIds(), (Strings{"x", "y"}));
  // A branch id is taken whatever ops the new registration names.
  EXPECT_EQ(store_->AddBranch("a1", branch("x", 2, {"try"})).code(), Status::Code::kConflict);
  EXPECT_EQ(store_->AddBranch("a1", branch("x", 2, {"other"})).code(), Status::Code::kConflict);
  EXPECT_EQ(Load("a1").ops.size(), 6u);
  EXPECT_EQ(store_->AddBranch("nope", branch("z", 0, {"try"})).code(), Status::Code::kNotFound);

  ASSERT_OK(store_->MarkSubmitted("a1", Now()));
  EXPECT_EQ(store_->AddBranch("a1", branch("z", 2, {"try"})).code(), Status::Code::kConflict);

  core::Transaction aborting = Tx("a2", core::Mode::kTcc, TxStatus::kAborting, {});
  aborting.submitted = false;
  Create(aborting);
  EXPECT_EQ(store_->AddBranch("a2", branch("z", 0, {"try"})).code(), Status::Code::kConflict);
  EXPECT_TRUE(Load("a2").ops.empty());
}

TEST_P(StoreContractTest, MarkSubmittedOnceMakesTheTransactionDueAndLogsIt) {
  core::Transaction tx = Tx("m1", core::Mode::kTcc, TxStatus::kActive, {"try"});
  tx.submitted = false;
  tx.next_attempt_at = Now() + std::chrono::hours(1);
  Create(tx, "node-a", Duration::zero());
  const core::TimePoint now = Now();
  ASSERT_OK(store_->MarkSubmitted("m1", now));
  core::Transaction stored = Load("m1", true);
  EXPECT_TRUE(stored.submitted);
  EXPECT_EQ(stored.next_attempt_at, now);
  EXPECT_EQ(stored.updated_at, now);
  ASSERT_EQ(stored.log.size(), 2u) << "the submit has its log row";
  EXPECT_EQ(stored.log[1].from, std::optional<TxStatus>(TxStatus::kActive));
  EXPECT_EQ(stored.log[1].to, TxStatus::kActive);
  EXPECT_EQ(stored.log[1].reason, "submitted");
  EXPECT_EQ(store_->ClaimDue("node-b", now, seconds(30), 10).value(), Strings{"m1"});
  EXPECT_EQ(store_->MarkSubmitted("m1", now).code(), Status::Code::kConflict);

  core::Transaction prepared = Tx("m2", core::Mode::kMsg, TxStatus::kPrepared, {"publish"});
  prepared.submitted = false;
  Create(prepared);
  EXPECT_EQ(store_->MarkSubmitted("m2", now).code(), Status::Code::kConflict) << "not active";
  EXPECT_EQ(store_->MarkSubmitted("nope", now).code(), Status::Code::kNotFound);
}

// ---- Transition --------------------------------------------------------------------------------

TEST_P(StoreContractTest, TransitionsFollowEachModesTableAndNothingElse) {
  const TxStatus statuses[] = {TxStatus::kActive,    TxStatus::kPrepared, TxStatus::kCommitting,
                               TxStatus::kCommitted, TxStatus::kAborting, TxStatus::kAborted};
  int legal = 0;
  for (core::Mode mode :
       {core::Mode::k2pc, core::Mode::kTcc, core::Mode::kSaga, core::Mode::kMsg}) {
    for (TxStatus from : statuses) {
      for (TxStatus to : statuses) {
        const std::string gid = std::string(core::ModeName(mode)) + "-" +
                                std::string(core::StatusName(from)) + "-" +
                                std::string(core::StatusName(to));
        Create(Tx(gid, mode, from, {"op"}));
        Status s = store_->Transition(gid, from, to, "test", Now(), {}, nullptr);
        if (core::FindTransition(mode, from, to) != nullptr) {
          ++legal;
          EXPECT_TRUE(s.ok()) << gid << ": " << s.ToString();
          EXPECT_EQ(Load(gid).status, to) << gid;
        } else {
          EXPECT_EQ(s.code(), Status::Code::kConflict) << gid << ": " << s.ToString();
          EXPECT_EQ(Load(gid).status, from) << gid;
          EXPECT_EQ(Load(gid, true).log.size(), 1u) << gid << ": no log row for a refused move";
        }
      }
    }
  }
  EXPECT_EQ(legal, 15);
}

TEST_P(StoreContractTest, ATransitionMovesFromTheStatusItNamesWithItsLogRowAndOps) {
  Create(Tx("t1", core::Mode::k2pc, TxStatus::kActive, {"prepare", "commit"}));
  const core::TimePoint at = Now() + seconds(5);
  // `from` is stale: Conflict, and nothing changes.
  EXPECT_EQ(
      store_->Transition("t1", TxStatus::kCommitting, TxStatus::kCommitted, "late", at, {}, nullptr)
          .code(),
      Status::Code::kConflict);
  // An op to record that does not exist: NotFound, and no move.
  EXPECT_EQ(store_
                ->Transition("t1", TxStatus::kActive, TxStatus::kCommitting, "all prepared", at,
                             {Op("b", "prepare", OpStatus::kSucceeded, 1),
                              Op("b", "nothing", OpStatus::kSucceeded, 1)},
                             nullptr)
                .code(),
            Status::Code::kNotFound);
  EXPECT_EQ(Load("t1").status, TxStatus::kActive);
  EXPECT_EQ(StatusOf("t1", "b", "prepare"), OpStatus::kPending);
  EXPECT_EQ(
      store_->Transition("nope", TxStatus::kActive, TxStatus::kCommitting, "", at, {}, nullptr)
          .code(),
      Status::Code::kNotFound);

  ASSERT_OK(store_->Transition("t1", TxStatus::kActive, TxStatus::kCommitting, "all prepared", at,
                               {Op("b", "prepare", OpStatus::kSucceeded, 1)}, nullptr));
  core::Transaction tx = Load("t1", true);
  EXPECT_EQ(tx.status, TxStatus::kCommitting);
  EXPECT_EQ(tx.reason, "all prepared");
  EXPECT_EQ(tx.updated_at, at);
  EXPECT_EQ(tx.next_attempt_at, at) << "a move makes the transaction due";
  EXPECT_EQ(tx.FindOp("b", "prepare")->status, OpStatus::kSucceeded);
  EXPECT_EQ(tx.FindOp("b", "prepare")->attempts, 1);
  ASSERT_EQ(tx.log.size(), 2u);
  EXPECT_EQ(tx.log[1].at, at);
  EXPECT_EQ(tx.log[1].from, std::optional<TxStatus>(TxStatus::kActive));
  EXPECT_EQ(tx.log[1].to, TxStatus::kCommitting);
  EXPECT_EQ(tx.log[1].reason, "all prepared");
  // The same move again: `from` is stale now.
  EXPECT_EQ(
      store_->Transition("t1", TxStatus::kActive, TxStatus::kCommitting, "again", at, {}, nullptr)
          .code(),
      Status::Code::kConflict);
  EXPECT_EQ(Load("t1", true).log.size(), 2u);
}

// ---- RecordOps ---------------------------------------------------------------------------------

TEST_P(StoreContractTest, RecordOpsStoresAttemptsAndErrorsOfExistingOpsOnly) {
  const Fence a{"node-a", seconds(30)};
  Create(Tx("r1", core::Mode::kSaga, TxStatus::kActive, {"action", "compensate"}), a.owner,
         a.lease);
  const core::TimePoint at = Now() + seconds(3);
  BranchOp failed = Op("b", "action", OpStatus::kPending, 2);
  failed.last_error = "503";
  ASSERT_OK(store_->RecordOps("r1", {failed}, at, a));
  core::Transaction tx = Load("r1");
  EXPECT_EQ(tx.FindOp("b", "action")->attempts, 2);
  EXPECT_EQ(tx.FindOp("b", "action")->last_error, "503");
  EXPECT_EQ(tx.updated_at, at);
  // One op that does not exist: none of them is recorded.
  EXPECT_EQ(store_
                ->RecordOps("r1",
                            {Op("b", "action", OpStatus::kSucceeded, 3),
                             Op("b", "nothing", OpStatus::kSucceeded, 1)},
                            at, a)
                .code(),
            Status::Code::kNotFound);
  EXPECT_EQ(StatusOf("r1", "b", "action"), OpStatus::kPending);
  EXPECT_EQ(store_->RecordOps("nope", {}, at, a).code(), Status::Code::kNotFound);
  // A fence that fails is LeaseLost, whatever else is wrong with the write.
  const Fence b{"node-b", seconds(30)};
  EXPECT_EQ(store_->RecordOps("r1", {Op("b", "nothing", OpStatus::kSucceeded, 1)}, at, b).code(),
            Status::Code::kLeaseLost);
  // A lease renewal alone (no ops) leaves updated_at alone.
  ASSERT_OK(store_->RecordOps("r1", {}, at + seconds(10), a));
  EXPECT_EQ(Load("r1").updated_at, at);
}

TEST_P(StoreContractTest, ARefusedOpKeepsTheHigherAttemptCount) {
  const Fence a{"node-a", seconds(30)};
  Create(Tx("r2", core::Mode::kSaga, TxStatus::kActive, {"action"}), a.owner, a.lease);
  ASSERT_OK(store_->RecordOps("r2", {Op("b", "action", OpStatus::kRefused, 5)}, Now(), a));
  // A stale write with fewer attempts: still refused, still 5.
  ASSERT_OK(store_->RecordOps("r2", {Op("b", "action", OpStatus::kPending, 2)}, Now(), a));
  EXPECT_EQ(StatusOf("r2", "b", "action"), OpStatus::kRefused);
  EXPECT_EQ(Load("r2").FindOp("b", "action")->attempts, 5);
  // A succeeded op stays as stored, attempts included.
  ASSERT_OK(store_->RecordOps("r2", {Op("b", "action", OpStatus::kSucceeded, 6)}, Now(), a));
  ASSERT_OK(store_->RecordOps("r2", {Op("b", "action", OpStatus::kRefused, 9)}, Now(), a));
  EXPECT_EQ(StatusOf("r2", "b", "action"), OpStatus::kSucceeded);
  EXPECT_EQ(Load("r2").FindOp("b", "action")->attempts, 6);
}

TEST_P(StoreContractTest, AnOpsLatestCallsAreStoredWithItsOutcomeAndGoWithTheHigherAttempts) {
  const Fence a{"node-a", seconds(30)};
  Create(Tx("r3", core::Mode::kSaga, TxStatus::kActive, {"action"}), a.owner, a.lease);
  const core::TimePoint t0 = core::TimePoint(std::chrono::milliseconds(1'800'000'000'123));
  BranchOp op = Op("b", "action", OpStatus::kPending, 0);
  for (int i = 0; i < 12; ++i) {
    op.attempts = i + 1;
    op.AddCall(core::OpCall{t0 + seconds(i), std::chrono::microseconds(1500 + i),
                            i == 11 ? OpStatus::kRefused : OpStatus::kPending});
  }
  op.status = OpStatus::kRefused;
  ASSERT_OK(store_->RecordOps("r3", {op}, Now(), a));
  core::Transaction tx = Load("r3");
  const BranchOp* stored = tx.FindOp("b", "action");
  ASSERT_EQ(stored->calls.size(), core::kMaxOpCallsKept) << "the latest ten, no more";
  EXPECT_EQ(stored->calls.front().started, t0 + seconds(2));
  EXPECT_EQ(stored->calls.front().took, std::chrono::microseconds(1502));
  EXPECT_EQ(stored->calls.front().outcome, OpStatus::kPending);
  EXPECT_EQ(stored->calls.back().started, t0 + seconds(11));
  EXPECT_EQ(stored->calls.back().outcome, OpStatus::kRefused);
  // A stale write with fewer attempts leaves the calls of the refused op as they were.
  BranchOp stale = Op("b", "action", OpStatus::kPending, 1);
  stale.AddCall(core::OpCall{t0, std::chrono::microseconds(1), OpStatus::kPending});
  ASSERT_OK(store_->RecordOps("r3", {stale}, Now(), a));
  EXPECT_EQ(Load("r3").FindOp("b", "action")->calls.size(), core::kMaxOpCallsKept);
}

// ---- SetAttention ------------------------------------------------------------------------------

TEST_P(StoreContractTest, AttentionIsSetAndClearedWithOrWithoutAFence) {
  const Fence a{"node-a", seconds(30)};
  Create(Tx("s1", core::Mode::kSaga, TxStatus::kActive, {"action"}), a.owner, a.lease);
  ASSERT_OK(store_->SetAttention("s1", "b keeps failing", &a));
  EXPECT_EQ(Load("s1").attention, "b keeps failing");
  ASSERT_OK(store_->SetAttention("s1", "", nullptr));
  EXPECT_EQ(Load("s1").attention, "");
  ASSERT_OK(store_->SetAttention("s1", "operator", nullptr));
  EXPECT_EQ(Load("s1").attention, "operator");
  EXPECT_EQ(store_->SetAttention("nope", "x", nullptr).code(), Status::Code::kNotFound);
  EXPECT_EQ(store_->SetAttention("nope", "x", &a).code(), Status::Code::kNotFound);
}

// ---- Reschedule and MakeDue --------------------------------------------------------------------

TEST_P(StoreContractTest, RescheduleSetsTheNextAttemptAndGivesTheLeaseBack) {
  Create(Tx("d1", core::Mode::k2pc, TxStatus::kCommitting, {"commit"}), "node-a", seconds(30));
  const core::TimePoint later = Now() + seconds(20);
  // Not the holder: nothing happens.
  ASSERT_OK(store_->Reschedule("d1", "node-b", later));
  EXPECT_NE(Load("d1").next_attempt_at, later);
  EXPECT_FALSE(store_->TryLease("d1", "node-b", seconds(30)).value());
  ASSERT_OK(store_->Reschedule("d1", "node-a", later));
  EXPECT_EQ(Load("d1").next_attempt_at, later);
  EXPECT_EQ(store_->ClaimDue("node-b", Now(), seconds(30), 10).value(), Strings{})
      << "not due before `later`";
  EXPECT_EQ(store_->ClaimDue("node-b", later, seconds(30), 10).value(), Strings{"d1"})
      << "due then, and its lease given back";
  EXPECT_EQ(store_->Reschedule("nope", "node-a", later).code(), Status::Code::kNotFound);
}

TEST_P(StoreContractTest, AWakeUpRequestedDuringADriveIsNotLostByItsReschedule) {
  Create(Tx("d2", core::Mode::k2pc, TxStatus::kCommitting, {"commit"}), "node-a", seconds(30));
  const core::TimePoint now = Now();
  ASSERT_OK(store_->MakeDue("d2", now));
  EXPECT_EQ(Load("d2").next_attempt_at, now);
  EXPECT_FALSE(store_->TryLease("d2", "node-b", seconds(30)).value()) << "leases are untouched";
  ASSERT_OK(store_->Reschedule("d2", "node-a", now + std::chrono::hours(1)));
  EXPECT_EQ(Load("d2").next_attempt_at, now) << "the client's wake-up stays";
  // Once only: the next reschedule is obeyed.
  ASSERT_TRUE(store_->TryLease("d2", "node-a", seconds(30)).value());
  ASSERT_OK(store_->Reschedule("d2", "node-a", now + std::chrono::hours(1)));
  EXPECT_EQ(Load("d2").next_attempt_at, now + std::chrono::hours(1));
}

TEST_P(StoreContractTest, OnlyAnUnfinishedTransactionIsMadeDue) {
  Create(Tx("f1", core::Mode::k2pc, TxStatus::kCommitted, {"commit"}));
  const core::TimePoint before = Load("f1").next_attempt_at;
  EXPECT_EQ(store_->MakeDue("f1", Now() + seconds(9)).code(), Status::Code::kConflict);
  EXPECT_EQ(Load("f1").next_attempt_at, before);
  EXPECT_EQ(store_->MakeDue("nope", Now()).code(), Status::Code::kNotFound);
}

// ---- ClaimDue, TryLease, ReleaseLeases ---------------------------------------------------------

TEST_P(StoreContractTest, ClaimDueLeasesDueUnfinishedUnleasedTransactionsEachToOneOwner) {
  const core::TimePoint now = Now();
  const auto zero = Duration::zero();
  for (int i = 0; i < 5; ++i) {
    Create(Tx("due-" + std::to_string(i), core::Mode::k2pc, TxStatus::kCommitting, {"commit"}),
           "node-a", zero);
  }
  core::Transaction later = Tx("later", core::Mode::k2pc, TxStatus::kCommitting, {"commit"});
  later.next_attempt_at = now + std::chrono::hours(1);
  Create(later, "node-a", zero);
  Create(Tx("done", core::Mode::k2pc, TxStatus::kCommitted, {"commit"}), "node-a", zero);
  Create(Tx("held", core::Mode::k2pc, TxStatus::kCommitting, {"commit"}), "node-x", seconds(30));

  const core::TimePoint claim_at = Now();  // every one created is due by then, but `later`
  Strings first = store_->ClaimDue("node-b", claim_at, seconds(30), 3).value();
  EXPECT_EQ(first.size(), 3u) << "at most the limit";
  Strings second = store_->ClaimDue("node-c", claim_at, seconds(30), 10).value();
  EXPECT_EQ(second.size(), 2u);
  Strings all = first;
  all.insert(all.end(), second.begin(), second.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, (Strings{"due-0", "due-1", "due-2", "due-3", "due-4"}))
      << "each due one to one owner; not the later, finished or held ones";
  EXPECT_EQ(store_->ClaimDue("node-d", claim_at, seconds(30), 10).value(), Strings{});
}

TEST_P(StoreContractTest, TryLeaseTakesAFreeOrOwnLeaseOfAnUnfinishedTransaction) {
  Create(Tx("l1", core::Mode::k2pc, TxStatus::kCommitting, {"commit"}), "node-a", seconds(30));
  EXPECT_FALSE(store_->TryLease("l1", "node-b", seconds(30)).value());
  EXPECT_TRUE(store_->TryLease("l1", "node-a", seconds(30)).value()) << "its own: renewed";
  ASSERT_OK(store_->ReleaseLeases("node-a"));
  EXPECT_TRUE(store_->TryLease("l1", "node-b", seconds(30)).value());
  EXPECT_FALSE(store_->TryLease("l1", "node-a", seconds(30)).value());
  Create(Tx("l2", core::Mode::k2pc, TxStatus::kAborted, {"abort"}), "node-a", Duration::zero());
  EXPECT_FALSE(store_->TryLease("l2", "node-a", seconds(30)).value()) << "finished";
  EXPECT_EQ(store_->TryLease("nope", "node-a", seconds(30)).status().code(),
            Status::Code::kNotFound);
}

TEST_P(StoreContractTest, ReleaseLeasesFreesTheNodesAndItsRunsLeasesOnly) {
  for (const std::string owner : {"node-a", "node-a#1", "node-a#2", "node-ab", "node-b#1"}) {
    Create(Tx("of-" + owner, core::Mode::k2pc, TxStatus::kCommitting, {"commit"}), owner,
           seconds(30));
  }
  ASSERT_OK(store_->ReleaseLeases("node-a"));
  for (const std::string owner : {"node-a", "node-a#1", "node-a#2"}) {
    EXPECT_TRUE(store_->TryLease("of-" + owner, "node-z", seconds(30)).value()) << owner;
  }
  for (const std::string owner : {"node-ab", "node-b#1"}) {
    EXPECT_FALSE(store_->TryLease("of-" + owner, "node-z", seconds(30)).value()) << owner;
  }
}

// ---- List and CountByStatus --------------------------------------------------------------------

TEST_P(StoreContractTest, ListFiltersPagesInGidOrderAndLeavesOpsAndLogOut) {
  const core::TimePoint now = Now();
  struct Row {
    std::string gid;
    core::Mode mode;
    TxStatus status;
    core::TimePoint created;
    core::TimePoint deadline;
    std::string attention;
  };
  const std::vector<Row> rows = {
      {"g1", core::Mode::k2pc, TxStatus::kCommitted, now - seconds(50), now - seconds(1), ""},
      {"g2", core::Mode::kSaga, TxStatus::kActive, now - seconds(40), now + seconds(60), ""},
      {"g3", core::Mode::k2pc, TxStatus::kCommitting, now - seconds(30), now - seconds(1), ""},
      {"g4", core::Mode::kTcc, TxStatus::kActive, now - seconds(20), now + seconds(60), "look"},
      {"g5", core::Mode::kMsg, TxStatus::kPrepared, now - seconds(10), now + seconds(60), ""},
  };
  for (const Row& r : rows) {
    core::Transaction tx = Tx(r.gid, r.mode, r.status, {"op"});
    tx.created_at = r.created;
    tx.deadline = r.deadline;
    Create(tx);
    if (!r.attention.empty()) ASSERT_OK(store_->SetAttention(r.gid, r.attention, nullptr));
  }
  auto list = [&](core::ListFilter f) { return Gids(store_->List(f).value().transactions); };
  EXPECT_EQ(list({}), (Strings{"g1", "g2", "g3", "g4", "g5"}));
  EXPECT_EQ(list({.status = TxStatus::kActive}), (Strings{"g2", "g4"}));
  EXPECT_EQ(list({.mode = core::Mode::k2pc}), (Strings{"g1", "g3"}));
  EXPECT_EQ(list({.status = TxStatus::kActive, .mode = core::Mode::kTcc}), Strings{"g4"});
  EXPECT_EQ(list({.limit = 2}), (Strings{"g1", "g2"}));
  EXPECT_EQ(list({.after_gid = "g2", .limit = 2}), (Strings{"g3", "g4"}));
  EXPECT_EQ(list({.after_gid = "g5"}), Strings{});
  EXPECT_EQ(list({.created_since = now - seconds(30)}), (Strings{"g3", "g4", "g5"}));
  EXPECT_EQ(list({.created_before = now - seconds(30)}), (Strings{"g1", "g2"}));
  EXPECT_EQ(list({.created_since = now - seconds(40), .created_before = now - seconds(20)}),
            (Strings{"g2", "g3"}));
  // Stuck: unfinished, and flagged or past the deadline (g1 is past it, but finished).
  EXPECT_EQ(list({.stuck_at = now}), (Strings{"g3", "g4"}));

  core::Transaction summary =
      store_->List({.after_gid = "g3", .limit = 1}).value().transactions.at(0);
  EXPECT_EQ(summary.gid, "g4");
  EXPECT_EQ(summary.mode, core::Mode::kTcc);
  EXPECT_EQ(summary.status, TxStatus::kActive);
  EXPECT_EQ(summary.attention, "look");
  EXPECT_EQ(summary.created_at, now - seconds(20));
  EXPECT_EQ(summary.deadline, now + seconds(60));
  EXPECT_TRUE(summary.ops.empty());
  EXPECT_TRUE(summary.log.empty());
}

TEST_P(StoreContractTest, CountByStatusCountsEveryTransactionAndLeavesEmptyStatusesOut) {
  EXPECT_TRUE(store_->CountByStatus().value().by_status.empty());
  Create(Tx("c1", core::Mode::k2pc, TxStatus::kActive, {"prepare"}));
  Create(Tx("c2", core::Mode::k2pc, TxStatus::kActive, {"prepare"}));
  Create(Tx("c3", core::Mode::kSaga, TxStatus::kAborted, {"action"}));
  ASSERT_OK(
      store_->Transition("c2", TxStatus::kActive, TxStatus::kAborting, "", Now(), {}, nullptr));
  EXPECT_EQ(store_->CountByStatus().value().by_status,
            (std::map<TxStatus, int64_t>{
                {TxStatus::kActive, 1}, {TxStatus::kAborting, 1}, {TxStatus::kAborted, 1}}));
}

INSTANTIATE_TEST_SUITE_P(BothStores, StoreContractTest,
                         ::testing::Values("postgres", "memory", "sharded"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace treaty::harness
