#pragma once

// Fakes of the core's environment for unit tests: a clock that moves only when told, a
// transport that answers from a script and records every call, ids from a counter.

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/thread_annotations.h"
#include "coordinator/core/branch_transport.h"
#include "coordinator/core/environment.h"

namespace treaty::core::testing {

class FakeClock : public Clock {
 public:
  FakeClock() : now_(std::chrono::system_clock::time_point(std::chrono::hours(24 * 20000))) {}
  TimePoint Now() override {
    MutexLock lock(mu_);
    return now_;
  }
  MonoTime Monotonic() override {
    MutexLock lock(mu_);
    return mono_;
  }
  // Both clocks move on by `d`.
  template <typename Rep, typename Period>
  void Advance(std::chrono::duration<Rep, Period> d) {
    MutexLock lock(mu_);
    now_ += std::chrono::duration_cast<TimePoint::duration>(d);
    mono_ += std::chrono::duration_cast<MonoTime::duration>(d);
  }

 private:
  Mutex mu_;
  TimePoint now_ GUARDED_BY(mu_);
  MonoTime mono_ GUARDED_BY(mu_){};
};

class CountingIds : public IdGenerator {
 public:
  std::string NewGid() override { return "gid-" + std::to_string(++next_); }
  double Random01() override { return 0.5; }  // jitter-free backoff

 private:
  int next_ = 0;
};

// Answers by (branch id, op): a queue of replies per key, then the default (2xx).
class ScriptedTransport : public BranchTransport {
 public:
  std::vector<BranchReply> CallAll(const std::vector<BranchCall>& calls) override {
    std::function<void(const BranchCall&)> hook;
    {
      MutexLock lock(mu_);
      hook = hook_;
    }
    if (hook) {
      for (const BranchCall& c : calls) hook(c);
    }
    std::vector<BranchReply> out;
    MutexLock lock(mu_);
    for (const BranchCall& c : calls) {
      log_.push_back(c);
      auto& q = script_[c.branch_id + "/" + c.op];
      if (!q.empty()) {
        out.push_back(q.front());
        q.pop_front();
      } else {
        out.push_back(BranchReply{BranchReply::Outcome::kDone, 200, ""});
      }
    }
    return out;
  }

  // The next answers to `op` on `branch`.
  void Then(const std::string& branch, const std::string& op, BranchReply reply, int times = 1) {
    MutexLock lock(mu_);
    for (int i = 0; i < times; ++i) script_[branch + "/" + op].push_back(reply);
  }

  // Runs `hook` on each call as it is made, before it is answered (e.g. to change the world
  // while a participant is being called).
  void OnCall(std::function<void(const BranchCall&)> hook) {
    MutexLock lock(mu_);
    hook_ = std::move(hook);
  }

  // "branch/op" of every call so far, in order.
  std::vector<std::string> Calls() {
    MutexLock lock(mu_);
    std::vector<std::string> out;
    for (const BranchCall& c : log_) out.push_back(c.branch_id + "/" + c.op);
    return out;
  }
  std::vector<BranchCall> RawCalls() {
    MutexLock lock(mu_);
    return log_;
  }

  static BranchReply Refused(std::string detail) {
    return BranchReply{BranchReply::Outcome::kRefused, 409, std::move(detail)};
  }
  // A 2xx answer with `json` as its body.
  static BranchReply Answer(std::string json) {
    BranchReply r{BranchReply::Outcome::kDone, 200, json};
    r.json_body = std::move(json);
    return r;
  }
  static BranchReply Unknown(int status = 503, std::string detail = "unavailable") {
    return BranchReply{BranchReply::Outcome::kUnknown, status, std::move(detail)};
  }

 private:
  Mutex mu_;
  std::map<std::string, std::deque<BranchReply>> script_ GUARDED_BY(mu_);
  std::vector<BranchCall> log_ GUARDED_BY(mu_);
  std::function<void(const BranchCall&)> hook_ GUARDED_BY(mu_);
};

// Records every point reached.
class RecordingCrashPoints : public CrashPoints {
 public:
  void Reach(std::string_view point) override {
    MutexLock lock(mu_);
    reached_.emplace_back(point);
  }
  std::vector<std::string> reached() {
    MutexLock lock(mu_);
    return reached_;
  }

 private:
  Mutex mu_;
  std::vector<std::string> reached_ GUARDED_BY(mu_);
};

}  // namespace treaty::core::testing
