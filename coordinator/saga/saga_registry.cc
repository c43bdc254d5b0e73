#include "coordinator/saga/saga_registry.h"

namespace treaty::saga {

SagaRegistry::SagaRegistry(std::vector<std::string> patterns, std::string base_dir, Environment env)
    : patterns_(std::move(patterns)), base_dir_(std::move(base_dir)), env_(std::move(env)) {}

Status SagaRegistry::Reload() {
  auto loaded = LoadSagaDefinitions(patterns_, base_dir_, env_);
  if (!loaded.ok()) return loaded.status();
  std::vector<std::shared_ptr<const SagaDefinition>> defs;
  for (SagaDefinition& d : *loaded) defs.push_back(std::make_shared<SagaDefinition>(std::move(d)));
  MutexLock lock(mu_);
  defs_ = std::move(defs);
  return Status::Ok();
}

std::shared_ptr<const SagaDefinition> SagaRegistry::Find(const std::string& name) const {
  MutexLock lock(mu_);
  for (const auto& d : defs_) {
    if (d->name == name) return d;
  }
  return nullptr;
}

Result<SagaDefinition> SagaRegistry::Parse(const std::string& text, const std::string& file) const {
  return ParseSagaDefinition(text, file, env_);
}

std::vector<std::shared_ptr<const SagaDefinition>> SagaRegistry::List() const {
  MutexLock lock(mu_);
  return defs_;
}

}  // namespace treaty::saga
