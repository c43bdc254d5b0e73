#pragma once

// Each mode's state machine as data: which status changes are legal, and which of them are
// decisions (the durable points after which the outcome can no longer change). The store refuses
// any change not in the table, so no code path can move a transaction where it must not go.

#include <vector>

#include "coordinator/core/transaction.h"

namespace treaty::core {

struct Transition {
  TxStatus from;
  TxStatus to;
  bool decision;  // commit or abort decided: must be durable before any call it allows
};

// The legal transitions of `mode`.
const std::vector<Transition>& Transitions(Mode mode);

// The entry for from -> to in `mode`'s table, or nullptr when that change is illegal.
const Transition* FindTransition(Mode mode, TxStatus from, TxStatus to);

// The status a new transaction of `mode` starts in.
TxStatus InitialStatus(Mode mode);

}  // namespace treaty::core
