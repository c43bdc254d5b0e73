#pragma once

// How long to wait before the next attempt at something whose outcome is not known yet:
// exponential backoff with a cap and jitter. Pure arithmetic; randomness is passed in.

#include "common/duration.h"

namespace treaty::core {

struct RetryPolicy {
  Duration initial = std::chrono::milliseconds(200);
  Duration max = std::chrono::seconds(30);
  double multiplier = 2.0;
  double jitter = 0.2;  // each delay varies by up to +/- this fraction

  // The delay before attempt number `attempt` + 1, given that `attempt` attempts were made
  // (attempt >= 1), with `random01` uniform in [0, 1). Never above `max`, never negative.
  Duration Backoff(int attempt, double random01) const;
};

}  // namespace treaty::core
