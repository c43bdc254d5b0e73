#include "coordinator/env_crash_points.h"

#include <signal.h>

#include <algorithm>
#include <cstdlib>

#include "common/log.h"

namespace treaty {
namespace {
const Logger kLog("treatyd");
}  // namespace

EnvCrashPoints::EnvCrashPoints()
    : crash_("TREATY_CRASH_POINT", SIGKILL), pause_("TREATY_PAUSE_POINT", SIGSTOP) {}

void EnvCrashPoints::Reach(std::string_view point) {
  crash_.Reach(point);
  pause_.Reach(point);
}

EnvCrashPoints::Armed::Armed(const char* variable, int signal) : signal_(signal) {
  const char* spec = std::getenv(variable);  // NOLINT(concurrency-mt-unsafe)
  if (spec == nullptr || *spec == '\0') return;
  std::string s = spec;
  size_t colon = s.find(':');
  point_ = s.substr(0, colon);
  if (colon != std::string::npos) nth_ = std::max(1, std::atoi(s.c_str() + colon + 1));
  kLog.Warn("fault point armed",
            {{"variable", variable}, {"point", point_}, {"nth", std::to_string(nth_)}});
}

void EnvCrashPoints::Armed::Reach(std::string_view point) {
  if (point_.empty() || point != point_) return;
  if (++count_ == nth_) {
    kLog.Warn("fault point reached: signalling myself",
              {{"point", point_}, {"signal", std::to_string(signal_)}});
    ::raise(signal_);
  }
}

}  // namespace treaty
