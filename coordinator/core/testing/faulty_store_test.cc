// FaultyStore: forwards every call, fails the chosen methods as told (once, N times, until
// cleared; before or after the write), counts calls, and may be changed while others call it.

#include "coordinator/core/testing/faulty_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "coordinator/core/testing/in_memory_store.h"

namespace treaty::core::testing {
namespace {

using std::chrono::seconds;

Transaction Tx(const std::string& gid) {
  Transaction tx;
  tx.gid = gid;
  tx.mode = Mode::kSaga;
  tx.submitted = true;
  tx.ops = {BranchOp{.branch_id = "x", .op = "action"}};
  return tx;
}

class FaultyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(faulty_.Create(Tx("g1"), "node-a", seconds(30)).ok()); }

  InMemoryStore inner_;
  FaultyStore faulty_{inner_};
};

TEST_F(FaultyStoreTest, ForwardsEveryCallWhileNoFaultIsSet) {
  EXPECT_EQ(inner_.Calls("Create"), 1);
  EXPECT_EQ(faulty_.Load("g1", false).value().gid, "g1");
  EXPECT_TRUE(faulty_.SetAttention("g1", "look", nullptr).ok());
  EXPECT_EQ(inner_.Load("g1", false).value().attention, "look");
  EXPECT_EQ(faulty_.Load("nope", false).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(faulty_.CountByStatus().value().by_status.at(TxStatus::kActive), 1);
  EXPECT_EQ(faulty_.Calls(StoreMethod::kLoad), 2);
  EXPECT_EQ(faulty_.Injected(StoreMethod::kLoad), 0);
}

TEST_F(FaultyStoreTest, FailsOnceNTimesOrUntilCleared) {
  faulty_.FailOnce(StoreMethod::kLoad, Status::Unavailable("down"));
  EXPECT_EQ(faulty_.Load("g1", false).status().code(), Status::Code::kUnavailable);
  EXPECT_TRUE(faulty_.Load("g1", false).ok());
  EXPECT_EQ(inner_.Calls("Load"), 1) << "a failure before the write never reaches the store";

  faulty_.Fail(StoreMethod::kList, StoreFault{.status = Status::Internal("bad"), .times = 2});
  EXPECT_EQ(faulty_.List({}).status().code(), Status::Code::kInternal);
  EXPECT_EQ(faulty_.List({}).status().code(), Status::Code::kInternal);
  EXPECT_TRUE(faulty_.List({}).ok());

  faulty_.Fail(StoreMethod::kTryLease);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(faulty_.TryLease("g1", "node-a", seconds(1)).status().code(),
              Status::Code::kUnavailable);
  }
  EXPECT_TRUE(faulty_.Load("g1", false).ok()) << "only the chosen method fails";
  faulty_.Clear(StoreMethod::kTryLease);
  EXPECT_TRUE(faulty_.TryLease("g1", "node-a", seconds(1)).ok());
  EXPECT_EQ(faulty_.Calls(StoreMethod::kTryLease), 6);
  EXPECT_EQ(faulty_.Injected(StoreMethod::kTryLease), 5);
}

TEST_F(FaultyStoreTest, MethodsAreNamedAsInTheInterface) {
  EXPECT_TRUE(faulty_.Fail("MakeDue", StoreFault{.times = 1}));
  EXPECT_EQ(faulty_.MakeDue("g1", TimePoint{}).code(), Status::Code::kUnavailable);
  EXPECT_FALSE(faulty_.Fail("Drop", {}));
  for (size_t i = 0; i < kStoreMethods; ++i) {
    auto m = static_cast<StoreMethod>(i);
    EXPECT_TRUE(ParseStoreMethod(StoreMethodName(m)) == m) << StoreMethodName(m);
  }
}

TEST_F(FaultyStoreTest, AFailureAfterTheWriteLosesOnlyTheAnswer) {
  faulty_.FailOnce(StoreMethod::kTransition, Status::Unavailable("connection lost"),
                   /*after_write=*/true);
  EXPECT_EQ(faulty_
                .Transition("g1", TxStatus::kActive, TxStatus::kAborting, "client", TimePoint{}, {},
                            nullptr)
                .code(),
            Status::Code::kUnavailable);
  EXPECT_EQ(faulty_.Load("g1", false).value().status, TxStatus::kAborting) << "committed";
  // The caller's retry finds the move made.
  EXPECT_EQ(faulty_
                .Transition("g1", TxStatus::kActive, TxStatus::kAborting, "client", TimePoint{}, {},
                            nullptr)
                .code(),
            Status::Code::kConflict);
}

TEST_F(FaultyStoreTest, FailAllTakesTheWholeStoreDown) {
  faulty_.FailAll();
  EXPECT_EQ(faulty_.Load("g1", false).status().code(), Status::Code::kUnavailable);
  EXPECT_EQ(faulty_.ClaimDue("node-a", TimePoint::max(), seconds(1), 10).status().code(),
            Status::Code::kUnavailable);
  EXPECT_EQ(faulty_.ReleaseLeases("node-a").code(), Status::Code::kUnavailable);
  EXPECT_EQ(faulty_.CountByStatus().status().code(), Status::Code::kUnavailable);
  faulty_.ClearAll();
  EXPECT_TRUE(faulty_.Load("g1", false).ok());
}

TEST_F(FaultyStoreTest, FaultsMayChangeWhileOtherThreadsCall) {
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      while (!stop) {
        auto r = faulty_.Load("g1", false);
        EXPECT_TRUE(r.ok() || r.status().code() == Status::Code::kUnavailable);
        ++answered;
      }
    });
  }
  for (int i = 0; i < 200; ++i) {
    faulty_.Fail(StoreMethod::kLoad, StoreFault{.times = 3});
    faulty_.Clear(StoreMethod::kLoad);
  }
  faulty_.Fail(StoreMethod::kLoad, StoreFault{.times = 1});
  while (faulty_.Injected(StoreMethod::kLoad) == 0) std::this_thread::yield();
  stop = true;
  for (auto& t : callers) t.join();
  EXPECT_EQ(faulty_.Calls(StoreMethod::kLoad), answered.load());
}

}  // namespace
}  // namespace treaty::core::testing
