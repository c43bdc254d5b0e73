#include "coordinator/core/state_machine.h"

#include <gtest/gtest.h>

#include <set>

namespace treaty::core {
namespace {

constexpr TxStatus kAll[] = {TxStatus::kActive,    TxStatus::kPrepared, TxStatus::kCommitting,
                             TxStatus::kCommitted, TxStatus::kAborting, TxStatus::kAborted};

TEST(StateMachine, TwoPhaseCommitAllowsExactlyItsFourTransitions) {
  std::set<std::pair<TxStatus, TxStatus>> legal;
  for (TxStatus from : kAll) {
    for (TxStatus to : kAll) {
      if (FindTransition(Mode::k2pc, from, to)) legal.insert({from, to});
    }
  }
  EXPECT_EQ(legal,
            (std::set<std::pair<TxStatus, TxStatus>>{{TxStatus::kActive, TxStatus::kCommitting},
                                                     {TxStatus::kActive, TxStatus::kAborting},
                                                     {TxStatus::kCommitting, TxStatus::kCommitted},
                                                     {TxStatus::kAborting, TxStatus::kAborted}}));
}

TEST(StateMachine, OnlyTheDecisionsAreDecisions) {
  EXPECT_TRUE(FindTransition(Mode::k2pc, TxStatus::kActive, TxStatus::kCommitting)->decision);
  EXPECT_TRUE(FindTransition(Mode::k2pc, TxStatus::kActive, TxStatus::kAborting)->decision);
  EXPECT_FALSE(FindTransition(Mode::k2pc, TxStatus::kCommitting, TxStatus::kCommitted)->decision);
  EXPECT_FALSE(FindTransition(Mode::k2pc, TxStatus::kAborting, TxStatus::kAborted)->decision);
}

TEST(StateMachine, FinalStatusesHaveNoWayOut) {
  for (Mode m : {Mode::k2pc, Mode::kTcc, Mode::kSaga, Mode::kMsg}) {
    for (TxStatus to : kAll) {
      EXPECT_EQ(FindTransition(m, TxStatus::kCommitted, to), nullptr);
      EXPECT_EQ(FindTransition(m, TxStatus::kAborted, to), nullptr);
    }
    // Once decided, never the other way.
    EXPECT_EQ(FindTransition(m, TxStatus::kCommitting, TxStatus::kAborting), nullptr);
    EXPECT_EQ(FindTransition(m, TxStatus::kAborting, TxStatus::kCommitting), nullptr);
    EXPECT_EQ(FindTransition(m, TxStatus::kAborting, TxStatus::kCommitted), nullptr);
  }
}

TEST(StateMachine, NoDecisionRidesOnALaterCommit) {
  for (Mode m : {Mode::k2pc, Mode::kTcc, Mode::kSaga, Mode::kMsg}) {
    for (const Transition& t : Transitions(m)) {
      EXPECT_FALSE(t.decision && t.may_ride) << ModeName(m);
      EXPECT_EQ(RecordMayRide(t.from, t.to), !t.decision) << ModeName(m);
    }
  }
  // A saga's active -> committed is its decision and its end at once: forced.
  EXPECT_FALSE(RecordMayRide(TxStatus::kActive, TxStatus::kCommitted));
  EXPECT_FALSE(RecordMayRide(TxStatus::kActive, TxStatus::kCommitting));
  EXPECT_FALSE(RecordMayRide(TxStatus::kCommitted, TxStatus::kAborted));  // illegal everywhere
  EXPECT_TRUE(RecordMayRide(TxStatus::kCommitting, TxStatus::kCommitted));
  EXPECT_TRUE(RecordMayRide(TxStatus::kAborting, TxStatus::kAborted));
}

TEST(StateMachine, OnlyTwoPhaseCommitBeginsMayRide) {
  EXPECT_TRUE(BeginMayRide(Mode::k2pc));
  EXPECT_FALSE(BeginMayRide(Mode::kTcc));
  EXPECT_FALSE(BeginMayRide(Mode::kSaga));
  EXPECT_FALSE(BeginMayRide(Mode::kMsg));
}

TEST(StateMachine, InitialStatus) {
  EXPECT_EQ(InitialStatus(Mode::k2pc), TxStatus::kActive);
  EXPECT_EQ(InitialStatus(Mode::kMsg), TxStatus::kPrepared);
}

TEST(Names, RoundTrip) {
  for (TxStatus s : kAll) EXPECT_EQ(ParseStatus(StatusName(s)), s);
  for (Mode m : {Mode::k2pc, Mode::kTcc, Mode::kSaga, Mode::kMsg})
    EXPECT_EQ(ParseMode(ModeName(m)), m);
  EXPECT_EQ(ParseMode("xa"), std::nullopt);
  EXPECT_TRUE(ValidId("order-1:stock_2.x", 100));
  EXPECT_FALSE(ValidId("a b", 100));
  EXPECT_FALSE(ValidId("a'b", 100));
  EXPECT_FALSE(ValidId("", 100));
  EXPECT_FALSE(ValidId(std::string(101, 'a'), 100));
}

}  // namespace
}  // namespace treaty::core
