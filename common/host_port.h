#pragma once

// A listening or connecting address: host (a name or an IP literal) and port.

#include <cstdint>
#include <string>

namespace treaty {

struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string ToString() const { return host + ":" + std::to_string(port); }
  bool operator==(const HostPort&) const = default;
};

}  // namespace treaty
