#pragma once

// Transactional messages (half messages with check-back).
//
//   prepared ──submit, or check-back says committed──► committing ──every message acked and
//      │                                                              every branch 2xx──► committed
//      └──abort, or check-back says rolled back──► aborting ──► aborted (nothing is sent)
//
// `prepare` stores the half messages (op "publish", one per message) and optional HTTP branches
// (op "action") with the service's query URL (op "query"). Nothing is delivered before the
// decision. If neither submit nor abort comes by the check-back time (the transaction's
// deadline), Treaty asks the query URL: 2xx committed, 409 rolled back, anything else unknown,
// asked again with backoff; after `max_checks` unanswered checks the transaction carries an
// attention note and is still asked. Delivery is at least once: every message carries a stable id
// (gid:index) in its headers, and is retried until acknowledged; only then is the transaction
// committed. A message is never delivered for a transaction that was not committed. An abort
// from anyone but the service itself ({"rolled_back": true}) is a check-back made at once: only
// the service's "rolled back" drops the messages.

#include "coordinator/core/processor.h"

namespace treaty::core {

class MsgProcessor : public Processor {
 public:
  explicit MsgProcessor(int max_checks = 10) : max_checks_(max_checks) {}
  Mode mode() const override { return Mode::kMsg; }
  // action (HTTP branches); messages and the query URL are ops of their own.
  const std::vector<std::string>& BranchOps() const override;
  const std::vector<std::string>& RequiredOps(bool registered) const override;
  // "query" (required), "messages", "check_back" (the deadline: "timeout" is refused).
  const std::vector<std::string>& RequestFields() const override;
  // Prepared, never submitted at begin: one "publish" op per message, the "query" op, then
  // the branches' "action" ops; due for its check-back at the deadline.
  Status Plan(const BeginRequest& request, const PlanDefaults& defaults,
              Transaction& tx) const override;
  // Prepared: the submit is the commit decision. Aborting or aborted: refused.
  SubmitStep OnSubmit(const Transaction& tx) const override;
  Status Drive(Transaction& tx, DriveContext& ctx) override;
  // Prepared: an operator's abort asks the service first (its local transaction may have
  // committed, and the event must not be lost).
  bool ChecksBeforeAbort(const Transaction& tx) const override;
  Status CheckBackNow(Transaction& tx, DriveContext& ctx) override;
  // query while prepared, publish and action while committing.
  std::vector<std::string> OpsDueIn(TxStatus status) const override;

 private:
  const int max_checks_;
};

}  // namespace treaty::core
