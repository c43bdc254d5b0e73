#pragma once

// The small interfaces through which the core sees time, randomness, fresh ids and fault
// injection, so that tests can control each.

#include <functional>
#include <string>
#include <string_view>

#include "coordinator/core/transaction.h"

namespace treaty::core {

// Monotonic time: what durations on this coordinator (how much of a lease is left) are measured
// with, so that a step of the wall clock cannot stretch them.
using MonoTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time: stamps and deadlines that are stored.
  virtual TimePoint Now() = 0;
  // Monotonic time, for durations measured on this coordinator only.
  virtual MonoTime Monotonic() = 0;
};

// The system clock.
Clock& SystemClock();

class IdGenerator {
 public:
  virtual ~IdGenerator() = default;
  // A new gid, unique with overwhelming probability; valid per ValidId.
  virtual std::string NewGid() = 0;
  // Uniform in [0, 1), for jitter.
  virtual double Random01() = 0;
};

// 128 random bits as hex; thread-safe.
IdGenerator& RandomIdGenerator();

// Named points in the coordinator where tests make it crash ("after_decision", ...). The
// production hook (treatyd) raises SIGKILL when $TREATY_CRASH_POINT names the point; otherwise
// and in unit tests it does nothing. Reach() may be called from any thread.
class CrashPoints {
 public:
  virtual ~CrashPoints() = default;
  virtual void Reach(std::string_view point) = 0;
};

// Does nothing.
CrashPoints& NoCrashPoints();

}  // namespace treaty::core
