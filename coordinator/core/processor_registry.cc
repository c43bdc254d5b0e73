#include "coordinator/core/processor_registry.h"

#include <algorithm>

namespace treaty::core {

ProcessorRegistry::ProcessorRegistry(std::initializer_list<Processor*> processors)
    : ProcessorRegistry(std::vector<Processor*>(processors)) {}

ProcessorRegistry::ProcessorRegistry(const std::vector<Processor*>& processors) {
  for (Processor* p : processors) by_mode_[p->mode()] = p;
}

Processor* ProcessorRegistry::Find(Mode mode) const {
  auto it = by_mode_.find(mode);
  return it == by_mode_.end() ? nullptr : it->second;
}

std::vector<std::string> ProcessorRegistry::RequestFields() const {
  std::vector<std::string> fields;
  for (const auto& [mode, p] : by_mode_) {
    for (const std::string& f : p->RequestFields()) {
      if (std::find(fields.begin(), fields.end(), f) == fields.end()) fields.push_back(f);
    }
  }
  return fields;
}

std::string ProcessorRegistry::ModesReading(const std::string& field) const {
  std::string names;
  for (const auto& [mode, p] : by_mode_) {
    const auto& reads = p->RequestFields();
    if (std::find(reads.begin(), reads.end(), field) == reads.end()) continue;
    names += (names.empty() ? "" : ", ") + std::string(ModeName(mode));
  }
  return names;
}

std::string ProcessorRegistry::ModeNames() const {
  std::string names;
  for (const auto& [mode, p] : by_mode_) {
    names += (names.empty() ? "" : ", ") + std::string(ModeName(mode));
  }
  return names;
}

}  // namespace treaty::core
