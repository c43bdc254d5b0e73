// treaty.yaml parsing: any bytes give a config or an error naming a place, never a crash.

#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/treaty_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto c =
      treaty::ParseTreatyConfig(text, "fuzz.yaml", [](const std::string&) { return std::nullopt; });
  if (!c.ok() && c.status().message().empty()) std::abort();  // an error always says what
  if (c.ok()) (void)treaty::DescribeConfig(*c);
  return 0;
}
