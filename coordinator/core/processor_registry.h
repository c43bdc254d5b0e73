#pragma once

// The processors a coordinator serves, one per mode. A small value (it holds pointers, not the
// processors, which must outlive every copy): the driver, the service and the transports each
// keep one and ask it for a mode's processor, never branching on the mode themselves.

#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "coordinator/core/processor.h"

namespace treaty::core {

class ProcessorRegistry {
 public:
  ProcessorRegistry() = default;
  // One processor per mode; a later one for the same mode replaces an earlier one.
  ProcessorRegistry(std::initializer_list<Processor*> processors);
  explicit ProcessorRegistry(const std::vector<Processor*>& processors);

  // The processor of `mode`, or nullptr when this coordinator does not serve it.
  Processor* Find(Mode mode) const;

  // Every request field some served mode reads (Processor::RequestFields), once each, in the
  // order of modes.
  std::vector<std::string> RequestFields() const;
  // The names of the served modes that read `field`, e.g. "msg" or "tcc, saga".
  std::string ModesReading(const std::string& field) const;
  // The served modes' names, e.g. "2pc, tcc, saga, msg".
  std::string ModeNames() const;

 private:
  std::map<Mode, Processor*> by_mode_;
};

}  // namespace treaty::core
