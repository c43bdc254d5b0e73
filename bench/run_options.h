#pragma once

// What a benchmark run measures, by kind ("full", "quick", "smoke": the same figures, shorter),
// and how it tells the terminal what it is doing.

#include <cstdint>
#include <string>
#include <vector>

#include "common/duration.h"

namespace treaty::bench {

struct RunOptions {
  Duration warmup, measure;
  std::vector<int> client_counts;
  std::vector<int> branch_counts;
  int clients = 32;
  int64_t outbox_rows, backlog, produce_messages;
  std::string kind;  // "full", "quick", "smoke"
};

// The options of a run of `kind`: "smoke", "quick", anything else a full run.
RunOptions OptionsFor(const std::string& kind);

// Prints "==> line" on stderr and returns `line`.
std::string Say(const std::string& line);

}  // namespace treaty::bench
