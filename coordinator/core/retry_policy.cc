#include "coordinator/core/retry_policy.h"

#include <algorithm>
#include <cmath>

namespace treaty::core {

Duration RetryPolicy::Backoff(int attempt, double random01) const {
  double base = static_cast<double>(initial.count()) *
                std::pow(multiplier, std::max(0, std::min(attempt, 64) - 1));
  base = std::min(base, static_cast<double>(max.count()));
  double factor = 1.0 + jitter * (2.0 * random01 - 1.0);
  double delay = std::clamp(base * factor, 0.0, static_cast<double>(max.count()));
  return Duration(static_cast<int64_t>(delay));
}

}  // namespace treaty::core
