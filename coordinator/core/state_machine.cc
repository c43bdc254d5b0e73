#include "coordinator/core/state_machine.h"

namespace treaty::core {

const std::vector<Transition>& Transitions(Mode mode) {
  using S = TxStatus;
  // 2PC (presumed abort): prepares run while active; then one decision, then phase two.
  // The end records ride (may_ride, in every mode): lost, the transaction is committing or
  // aborting again and its second phase (or a msg's publish, a saga's compensations) runs again,
  // exactly as after a coordinator's crash just before that write; participants take every op
  // more than once, consumers drop a message seen twice by its id, and a completion webhook is
  // written again with the record (a delivery marked done is a forced commit, which makes the
  // record before it durable too).
  static const std::vector<Transition> k2pc = {
      {S::kActive, S::kCommitting, true, false},
      {S::kActive, S::kAborting, true, false},
      {S::kCommitting, S::kCommitted, false, true},
      {S::kAborting, S::kAborted, false, true},
  };
  // TCC: tries run while active; confirm all, or cancel every branch that may have tried.
  static const std::vector<Transition> kTcc = k2pc;
  // Saga: actions run while active; all done is the end; a refusal compensates.
  static const std::vector<Transition> kSaga = {
      {S::kActive, S::kCommitted, true, false},
      {S::kActive, S::kAborting, true, false},
      {S::kAborting, S::kAborted, false, true},
  };
  // Transactional message: the half message waits in prepared for submit, abort or check-back.
  static const std::vector<Transition> kMsg = {
      {S::kPrepared, S::kCommitting, true, false},
      {S::kPrepared, S::kAborting, true, false},
      {S::kCommitting, S::kCommitted, false, true},
      {S::kAborting, S::kAborted, false, true},
  };
  switch (mode) {
    case Mode::k2pc:
      return k2pc;
    case Mode::kTcc:
      return kTcc;
    case Mode::kSaga:
      return kSaga;
    case Mode::kMsg:
      return kMsg;
  }
  return k2pc;
}

const Transition* FindTransition(Mode mode, TxStatus from, TxStatus to) {
  for (const Transition& t : Transitions(mode)) {
    if (t.from == from && t.to == to) return &t;
  }
  return nullptr;
}

bool RecordMayRide(TxStatus from, TxStatus to) {
  bool legal = false;
  for (Mode m : {Mode::k2pc, Mode::kTcc, Mode::kSaga, Mode::kMsg}) {
    const Transition* t = FindTransition(m, from, to);
    if (t == nullptr) continue;
    if (!t->may_ride) return false;
    legal = true;
  }
  return legal;
}

bool BeginMayRide(Mode mode) { return mode == Mode::k2pc; }

TxStatus InitialStatus(Mode mode) {
  return mode == Mode::kMsg ? TxStatus::kPrepared : TxStatus::kActive;
}

}  // namespace treaty::core
