#pragma once

// treatyd's fault points, armed from the environment. For fault tests; inert when unset.
//
//   $TREATY_CRASH_POINT = "name" or "name:N": SIGKILL on reaching that point (the Nth time).
//   $TREATY_PAUSE_POINT, the same spelling: SIGSTOP there instead (the process freezes until a
//   SIGCONT, as a coordinator paused by the OS or a long GC would; stale-owner tests).
//
// The variables are read once, at construction; Reach is thread-safe.

#include <atomic>
#include <string>
#include <string_view>

#include "coordinator/core/environment.h"

namespace treaty {

class EnvCrashPoints : public core::CrashPoints {
 public:
  EnvCrashPoints();
  void Reach(std::string_view point) override;

 private:
  // One variable's point: raises `signal` in this process the Nth time the point is reached.
  class Armed {
   public:
    Armed(const char* variable, int signal);
    void Reach(std::string_view point);

   private:
    int signal_;
    std::string point_;  // empty: unarmed
    int nth_ = 1;
    std::atomic<int> count_{0};
  };
  Armed crash_;
  Armed pause_;
};

}  // namespace treaty
