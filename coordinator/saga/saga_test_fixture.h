#pragma once

// The saga processor through the real TransactionService and TransactionDriver, over the
// in-memory store, a scripted transport and a fake clock: what the saga unit tests share.

#include <gtest/gtest.h>

#include "coordinator/core/testing/fakes.h"
#include "coordinator/core/testing/in_memory_store.h"
#include "coordinator/core/transaction_service.h"
#include "coordinator/saga/saga_processor.h"

namespace treaty::core {

using Strings = std::vector<std::string>;

// Step `id`, after the steps `after`, with a compensation unless not `compensable`.
inline BranchSpec Step(const std::string& id, Strings after = {}, bool compensable = true) {
  BranchSpec b{
      .id = id, .urls = {{"action", "http://p/" + id + "/action"}}, .after = std::move(after)};
  if (compensable) b.urls["compensate"] = "http://p/" + id + "/compensate";
  return b;
}

class SagaTest : public ::testing::Test {
 protected:
  SagaTest()
      : driver_(DriverOptions{.owner = "node-a",
                              .retry = RetryPolicy{std::chrono::milliseconds(200),
                                                   std::chrono::milliseconds(5000), 2, 0}},
                store_, transport_, clock_, ids_, crash_, {&saga_}),
        service_(store_, driver_, clock_, ids_, crash_, std::chrono::seconds(10)) {}

  std::string Start(std::vector<BranchSpec> steps) {
    BeginRequest req;
    req.gid = "s1";
    req.mode = Mode::kSaga;
    req.branches = std::move(steps);
    auto r = service_.Begin(req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return "s1";
  }
  Transaction Load(const std::string& gid) { return store_.Load(gid, true).value(); }

  testing::InMemoryStore store_;
  testing::ScriptedTransport transport_;
  testing::FakeClock clock_;
  testing::CountingIds ids_;
  testing::RecordingCrashPoints crash_;
  SagaProcessor saga_;
  TransactionDriver driver_;
  TransactionService service_;
};

}  // namespace treaty::core
