#include "coordinator/core/state_machine.h"

namespace treaty::core {

const std::vector<Transition>& Transitions(Mode mode) {
  using S = TxStatus;
  // 2PC (presumed abort): prepares run while active; then one decision, then phase two.
  static const std::vector<Transition> k2pc = {
      {S::kActive, S::kCommitting, true},
      {S::kActive, S::kAborting, true},
      {S::kCommitting, S::kCommitted, false},
      {S::kAborting, S::kAborted, false},
  };
  // TCC: tries run while active; confirm all, or cancel every branch that may have tried.
  static const std::vector<Transition> kTcc = k2pc;
  // Saga: actions run while active; all done is the end; a refusal compensates.
  static const std::vector<Transition> kSaga = {
      {S::kActive, S::kCommitted, true},
      {S::kActive, S::kAborting, true},
      {S::kAborting, S::kAborted, false},
  };
  // Transactional message: the half message waits in prepared for submit, abort or check-back.
  static const std::vector<Transition> kMsg = {
      {S::kPrepared, S::kCommitting, true},
      {S::kPrepared, S::kAborting, true},
      {S::kCommitting, S::kCommitted, false},
      {S::kAborting, S::kAborted, false},
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

TxStatus InitialStatus(Mode mode) {
  return mode == Mode::kMsg ? TxStatus::kPrepared : TxStatus::kActive;
}

}  // namespace treaty::core
