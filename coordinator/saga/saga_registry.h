#pragma once

// The saga definitions treatyd serves, replaced whole on reload. Thread-safe.

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "coordinator/saga/saga_definition.h"

namespace treaty::saga {

class SagaRegistry {
 public:
  // `patterns` and `base_dir` as for LoadSagaDefinitions.
  SagaRegistry(std::vector<std::string> patterns, std::string base_dir, Environment env);

  // Loads every definition again. On any error the loaded set stays as it was and the error
  // (every problem, one a line) is returned.
  Status Reload();

  // The definition named `name`, or null. Stays valid after a reload replaced it.
  std::shared_ptr<const SagaDefinition> Find(const std::string& name) const;
  std::vector<std::shared_ptr<const SagaDefinition>> List() const;

  // Parses a definition's `text` (an older version's, kept in the store) as if loaded from
  // `file`, with this registry's environment; the loaded set is untouched.
  Result<SagaDefinition> Parse(const std::string& text, const std::string& file) const;

 private:
  const std::vector<std::string> patterns_;
  const std::string base_dir_;
  const Environment env_;
  mutable Mutex mu_;
  std::vector<std::shared_ptr<const SagaDefinition>> defs_ GUARDED_BY(mu_);
};

}  // namespace treaty::saga
