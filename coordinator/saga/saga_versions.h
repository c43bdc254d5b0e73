#pragma once

// Every version of a saga definition that a coordinator started transactions from, kept in the
// store so that any coordinator sharing it can start that version by name@version while
// transactions still run on it, and can say how many do (docs/sagas.md). Implemented over
// PostgreSQL by PgTransactionStore. Thread-safe; Unavailable when the store cannot be reached.

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/transaction.h"

namespace treaty::saga {

struct StoredSagaVersion {
  std::string name;
  std::string version;
  std::string file;
  std::string text;           // the definition file's text, as loaded
  core::TimePoint loaded_at;  // when a coordinator first kept it
  int64_t unfinished = 0;     // transactions started from it and not yet final
};

class SagaVersionStore {
 public:
  virtual ~SagaVersionStore() = default;

  // Keeps this version unless it is kept already (a version is its text's digest: the same
  // version is the same text).
  virtual Status SaveSagaVersion(const std::string& name, const std::string& version,
                                 const std::string& file, const std::string& text) = 0;

  // One kept version with its count of unfinished transactions; nullopt when never kept.
  virtual Result<std::optional<StoredSagaVersion>> FindSagaVersion(const std::string& name,
                                                                   const std::string& version) = 0;

  // Every kept version of `name`, newest first, with their counts of unfinished transactions.
  virtual Result<std::vector<StoredSagaVersion>> ListSagaVersions(const std::string& name) = 0;
};

}  // namespace treaty::saga
