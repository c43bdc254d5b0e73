#pragma once

// The requests that PgTransactionStore's writes batch (Create, Transition, RecordOps: one
// statement and one commit per batch, batcher.h), and what a batch answers when its statement
// fails. Internal to treaty_pg_store.

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/store.h"
#include "coordinator/store/pg_transaction_store.h"

namespace treaty::store {

struct PgTransactionStore::CreateRequest {
  std::string gid;
  std::string row;  // the transaction, its ops and its first log reason as one JSON object
};

struct PgTransactionStore::TransitionRequest {
  std::string gid;
  core::TxStatus from;
  core::TxStatus to;
  std::string reason;
  core::TimePoint now;
  std::string legal_modes;           // the modes in which from -> to is legal, comma-separated
  std::string ops_json;              // OpStatesJson: the outcomes to record
  std::optional<core::Fence> fence;  // a drive's; none for a client's move
};

struct PgTransactionStore::RecordRequest {
  std::string gid;
  core::TimePoint now;
  std::string ops_json;  // OpStatesJson; "{}" only renews the lease
  core::Fence fence;
};

// The answers of a batch whose statement failed with `failure`: nothing of it was written. When
// the store is unreachable (Unavailable) or the batch is one request, each request gets the
// failure. Otherwise one request may be why (a value PostgreSQL refuses): each runs again on its
// own, through `run_batch` with a batch of one, so that the others are not refused with it.
template <typename Request, typename Reply, typename RunBatch>
std::vector<Reply> AnswerFailedBatch(const std::vector<const Request*>& batch,
                                     const Status& failure, RunBatch run_batch) {
  std::vector<Reply> out;
  out.reserve(batch.size());
  const bool each_on_its_own = batch.size() > 1 && failure.code() != Status::Code::kUnavailable;
  for (const Request* request : batch) {
    out.push_back(each_on_its_own ? run_batch(std::vector<const Request*>{request}).front()
                                  : Reply{failure});
  }
  return out;
}

}  // namespace treaty::store
