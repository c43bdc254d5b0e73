#pragma once

// TransactionStore over PostgreSQL (schema "treaty", see migrations.cc), through libpqxx with a
// small connection pool. Each method is one database transaction: a status change commits with
// its decision-log row or not at all. libpqxx exceptions stop here: a lost connection or a
// serialization failure is Unavailable (retry), anything else Internal.

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/duration.h"
#include "coordinator/core/store.h"
#include "coordinator/saga/saga_versions.h"

namespace pqxx {
class transaction_base;
}

namespace treaty {
template <typename Request, typename Reply>
class Batcher;
}

namespace treaty::store {

class GroupCommitter;

struct PgStoreOptions {
  std::string url;  // libpq URI
  Duration connect_timeout = std::chrono::seconds(5);
  int pool_size = 16;
  // Concurrent state changes share database transactions (see group_commit.h).
  bool group_commit = false;
  int group_commit_max_batch = 64;
  // Concurrent Transition calls (the decisions and final states of different transactions) go
  // to the database together: up to `transition_batch` in one statement and one commit, with up
  // to `transition_batches_in_flight` such statements at once (batcher.h). Creations and
  // recorded op outcomes likewise.
  int transition_batch = 32;
  int transition_batches_in_flight = 2;
  // The records that may ride on a later forced commit (state_machine.h: a waiting 2PC client's
  // begin, the end records) are written on connections of their own whose session has
  // synchronous_commit off, in batches of their own: one WAL flush per 2PC transaction, its
  // decision's (docs/performance.md, finding 42). Off: every write is forced. Not with
  // group_commit (its shared transaction is forced).
  bool unforced_records = true;
};

class PgTransactionStore : public core::TransactionStore, public saga::SagaVersionStore {
 public:
  explicit PgTransactionStore(PgStoreOptions options);
  ~PgTransactionStore() override;

  Result<core::CreateResult> Create(const core::Transaction& tx, const std::string& owner,
                                    Duration lease) override;
  Result<core::Transaction> Load(const std::string& gid, bool with_log) override;
  Status AddBranch(const std::string& gid, const std::vector<core::BranchOp>& ops) override;
  Status MarkSubmitted(const std::string& gid, core::TimePoint now) override;
  Status Transition(const std::string& gid, core::TxStatus from, core::TxStatus to,
                    const std::string& reason, core::TimePoint now,
                    const std::vector<core::BranchOp>& ops, const core::Fence* fence) override;
  Status RecordOps(const std::string& gid, const std::vector<core::BranchOp>& ops,
                   core::TimePoint now, const core::Fence& fence) override;
  Status SetAttention(const std::string& gid, const std::string& attention,
                      const core::Fence* fence) override;
  Status Reschedule(const std::string& gid, const std::string& owner,
                    core::TimePoint next_attempt_at) override;
  Status MakeDue(const std::string& gid, core::TimePoint now) override;
  Result<std::vector<std::string>> ClaimDue(const std::string& owner, core::TimePoint now,
                                            Duration lease, int limit) override;
  Result<bool> TryLease(const std::string& gid, const std::string& owner, Duration lease) override;
  Status ReleaseLeases(const std::string& node) override;
  Result<core::ListPage> List(const core::ListFilter& filter) override;
  Result<core::StatusCounts> CountByStatus() override;

  Status Force(const std::string& gid, core::TxStatus from, core::TxStatus to,
               const std::string& reason, const std::string& actor, core::TimePoint now) override;

  Status SaveSagaVersion(const std::string& name, const std::string& version,
                         const std::string& file, const std::string& text) override;
  Result<std::optional<saga::StoredSagaVersion>> FindSagaVersion(
      const std::string& name, const std::string& version) override;
  Result<std::vector<saga::StoredSagaVersion>> ListSagaVersions(const std::string& name) override;

  // For metrics: unfinished transactions by status, and how long (seconds) the oldest due one
  // has waited.
  Result<std::pair<std::map<std::string, int64_t>, double>> InFlight();

 private:
  class Pool;
  // One write in its own transaction, or in a shared one with group commit.
  Status Write(const std::function<Status(pqxx::transaction_base&)>& write);
  // A write that is one SQL statement: without group commit it runs on its own (autocommit),
  // which spares the BEGIN and COMMIT round trips; with it, like Write().
  Status WriteStatement(const std::function<Status(pqxx::transaction_base&)>& write);
  // The same on a connection whose commits are not forced (unforced_records).
  Status WriteStatementUnforced(const std::function<Status(pqxx::transaction_base&)>& write);

  struct TransitionRequest;
  // Runs a batch of transitions as one statement; one status per request, in order.
  // `forced`: on the store's own connections; else on those with synchronous_commit off.
  std::vector<Status> RunTransitions(const std::vector<const TransitionRequest*>& batch,
                                     bool forced);
  struct CreateRequest;
  struct Created {
    Status status;
    bool created = false;
  };
  // Inserts a batch of transactions as one statement; per request, whether it was created.
  std::vector<Created> RunCreates(const std::vector<const CreateRequest*>& batch, bool forced);
  struct RecordRequest;
  // Records a batch of op outcomes as one statement; one status per request, in order.
  std::vector<Status> RunRecords(const std::vector<const RecordRequest*>& batch);

  std::unique_ptr<Pool> pool_;
  std::unique_ptr<GroupCommitter> group_;
  std::unique_ptr<Batcher<TransitionRequest, Status>> transitions_;
  std::unique_ptr<Batcher<CreateRequest, Created>> creates_;
  std::unique_ptr<Batcher<RecordRequest, Status>> records_;
  // unforced_records: its pool and batchers (null when off).
  std::unique_ptr<Pool> unforced_pool_;
  std::unique_ptr<Batcher<TransitionRequest, Status>> unforced_transitions_;
  std::unique_ptr<Batcher<CreateRequest, Created>> unforced_creates_;
};

}  // namespace treaty::store
