#pragma once

// Retention of the participant kit's own tables (docs/participants.md, "Retention"):
//
//   treaty_barrier        TCC/saga barrier rows and msg commit marks, by gid
//   treaty_2pc_branches   a 2PC branch's committed or aborted mark
//   treaty_inbox          consumed event ids (the dedupe window)
//
// The rule for barrier rows and 2PC marks: a gid's rows go only when every one of them is older
// than the barrier window AND the coordinator does not list the gid as unfinished. The second
// half is what keeps the rows an unfinished transaction still needs (a try waiting for its
// confirm or cancel, a cancel's row that refuses a late try, a msg mark a check-back will read)
// however long it stays unfinished; the window is what absorbs calls that come after the
// transaction finished (a duplicate, a try delayed in the network, a client's late try). When
// the coordinator cannot be asked, no barrier row or mark is deleted that round.
// Inbox rows go once older than the inbox window, whatever else.
//
// Each batch is one statement (its own transaction) over an index on the rows' time; a gid's
// rows go together in one statement. Thread-safe counters for /metrics.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "common/log.h"
#include "common/pg/pg_pool.h"
#include "common/status.h"
#include "participants/kit/participant_config.h"

namespace treaty::participant {

class KitRetention {
 public:
  // Starts a thread that runs a round now and then every config.retention_interval.
  KitRetention(pg::PgPool& pool, const ParticipantConfig& config, const Logger& log);
  ~KitRetention();  // stops and joins

  // Index DDL for the rows' times (IF NOT EXISTS), run with the kit's schema.
  static const char* SchemaSql();

  // One round: every table, batch after batch until each is done. Public for tests' sake.
  void RunRound();

  // Prometheus text: rows purged by table, and the age of the oldest row kept by table.
  std::string Metrics();

 private:
  void Run();
  // The gids the coordinator lists as unfinished (any of the four statuses), every page.
  Result<std::set<std::string>> UnfinishedGids();
  // Deletes the barrier rows (or 2PC marks) of gids past the window and not in `unfinished`.
  Result<int64_t> PurgeByGid(const std::string& table, const std::string& time_column,
                             const std::string& extra_filter,
                             const std::set<std::string>& unfinished);
  Result<int64_t> PurgeInbox();

  pg::PgPool& pool_;
  const ParticipantConfig& config_;
  const Logger& log_;
  std::atomic<int64_t> purged_barrier_{0};
  std::atomic<int64_t> purged_2pc_{0};
  std::atomic<int64_t> purged_inbox_{0};
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace treaty::participant
