#pragma once

// Durations as people write them in config files and requests: "200ms", "30s", "5m", "1h",
// "1.5s", "7d" (24-hour days), combinations such as "1m30s". Standard library only.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace treaty {

using Duration = std::chrono::milliseconds;

// Parses `text`; returns nullopt for anything that is not a non-negative duration with a unit
// (a bare number is refused: "30" could mean seconds or milliseconds). Sub-millisecond parts are
// truncated.
std::optional<Duration> ParseDuration(std::string_view text);

// The shortest exact spelling of `d` that ParseDuration reads back ("1m30s", "200ms", "0s").
std::string FormatDuration(Duration d);

}  // namespace treaty
