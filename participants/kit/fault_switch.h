#pragma once

// A test switch that makes a participant misbehave on a chosen op, driven over HTTP:
//
//   POST /admin/faults {"op": "commit", "action": "fail", "status": 503}   answer 503, do nothing
//   POST /admin/faults {"op": "prepare", "action": "hang"}                 hold the call open
//   POST /admin/faults {"op": "try", "action": "delay", "ms": 300}         answer late, as usual
//   POST /admin/faults {"op": "commit", "action": "off"}                   behave again
//   GET  /admin/faults
//
// The ops are the participant protocol's ("prepare", "commit", "try", ...) and "event", each
// apply of a consumed event (failing, it is retried until the fault is off; hanging, it holds
// the consumer, and a stop waits for it).
//
// A hung call returns (with 503) once its fault is switched off. Thread-safe.

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/duration.h"
#include "common/http/router.h"
#include "common/thread_annotations.h"
#include "participants/kit/protocol.h"

namespace treaty::participant {

class FaultSwitch {
 public:
  // Registers the admin endpoints.
  void Register(http::Router& router);

  // Nullopt: go on with `op`. Otherwise the reply to give instead (after hanging, if so told).
  std::optional<OpReply> Intercept(const std::string& op);

 private:
  struct Fault {
    std::string action;  // "fail", "hang" or "delay"
    int status = 503;
    Duration delay{};  // "delay": how long each call waits before it is handled
  };
  Mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, Fault> faults_ GUARDED_BY(mu_);
};

}  // namespace treaty::participant
