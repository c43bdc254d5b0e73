// Saga definition files: any bytes give a definition or an error, never a crash.

#include <cstdint>
#include <cstdlib>
#include <string>

#include "coordinator/saga/saga_definition.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "SVC") return std::string("http://127.0.0.1:9000");
    return std::nullopt;
  };
  auto d = treaty::saga::ParseSagaDefinition(text, "fuzz.yaml", env);
  if (!d.ok() && d.status().message().empty()) std::abort();
  if (d.ok() && d->steps.empty()) std::abort();  // a valid definition has steps
  return 0;
}
