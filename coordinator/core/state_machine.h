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
  // Its record may ride on a later forced commit (written with synchronous_commit off): lost in
  // a crash of the store's database, the transaction is back in `from` and is driven again, and
  // nothing answered or done after it contradicts that (docs/performance.md, finding 42). Never
  // a decision.
  bool may_ride = false;
};

// The legal transitions of `mode`.
const std::vector<Transition>& Transitions(Mode mode);

// The entry for from -> to in `mode`'s table, or nullptr when that change is illegal.
const Transition* FindTransition(Mode mode, TxStatus from, TxStatus to);

// The status a new transaction of `mode` starts in.
TxStatus InitialStatus(Mode mode);

// Whether the record of from -> to may ride on a later forced commit: the move is legal in some
// mode, and every mode in which it is legal says so (the store knows only from and to).
bool RecordMayRide(TxStatus from, TxStatus to);

// Whether the begin record of a transaction of `mode` may ride on its decision's forced commit
// when nothing about it is answered before the decision (a client that waits for the outcome):
// lost in a crash, the transaction is unknown, and its participants presume abort. True for 2PC
// only: its participant kit rolls back a prepared branch whose gid the coordinator does not know
// (the kit's sweep); no other mode's participants ask.
bool BeginMayRide(Mode mode);

}  // namespace treaty::core
