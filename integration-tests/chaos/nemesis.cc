#include "integration-tests/chaos/nemesis.h"

#include <memory>
#include <optional>
#include <thread>

namespace treaty::chaos {
namespace {

using Clock = std::chrono::steady_clock;

struct Kind {
  const char* name;
  int weight;
};
constexpr Kind kKinds[] = {{"kill", 25},
                           {"pause", 20},
                           {"skew", 8},
                           {"store-restart", 10},
                           {"broker-down", 6},
                           {"broker-slow", 6},
                           {"broker-errors", 6},
                           {"participant-fail", 10},
                           {"participant-hang", 6},
                           {"participant-slow", 12},
                           {"crash-point", 8},
                           {"pause-point", 12}};

const std::vector<std::string> kOrderOps = {"prepare",  "commit",      "abort",       "try",
                                            "confirm",  "cancel",      "saga/create", "saga/cancel",
                                            "saga/pay", "saga/refund", "query"};
const std::vector<std::string> kInventoryOps = {"prepare",      "commit",       "abort",
                                                "try",          "confirm",      "cancel",
                                                "saga/reserve", "saga/release", "event"};

// The points treatyd reaches right after a call or a decision, before it records it. Half the
// time a saga's action (kActionPoint): where a stale owner would go on to the next step, #18's
// worst case.
constexpr const char* kActionPoint = "after_action";
const std::vector<std::string> kFaultPoints = {
    "after_compensate", "after_try",   "after_confirm",  "after_cancel", "after_prepare",
    "after_commit",     "after_abort", "after_decision", "after_publish"};

Result<bool> Done(Status s) {
  if (!s.ok()) return s;
  return true;
}

}  // namespace

std::vector<std::string> FaultKinds() {
  std::vector<std::string> out;
  for (const Kind& k : kKinds) out.push_back(k.name);
  return out;
}

Nemesis::Nemesis(ChaosCluster& cluster, HistoryWriter& history, NemesisOptions options)
    : cluster_(cluster), history_(history), options_(options), rng_(options.seed * 7919 + 17) {}

Duration Nemesis::Between(Duration low, Duration high) {
  auto span = std::chrono::duration_cast<std::chrono::milliseconds>(high - low).count();
  return low + std::chrono::milliseconds(span <= 0 ? 0 : rng_() % static_cast<uint64_t>(span));
}

bool Nemesis::Busy(const std::string& target) const {
  for (const Active& a : active_) {
    if (a.target == target) return true;
  }
  return false;
}

bool Nemesis::AnyActive(const std::string& fault_prefix) const {
  for (const Active& a : active_) {
    if (a.fault.rfind(fault_prefix, 0) == 0) return true;
  }
  return false;
}

void Nemesis::Record(const std::string& type, const std::string& fault, const std::string& target,
                     const std::string& error) {
  history_.Append(HistoryEvent{.type = type, .error = error, .fault = fault, .target = target});
}

void Nemesis::StartOne() {
  int total = 0;
  for (const Kind& k : kKinds) {
    if (options_.only.empty() || options_.only.count(k.name)) total += k.weight;
  }
  if (total == 0) return;
  int pick = static_cast<int>(rng_() % static_cast<uint64_t>(total));
  std::string kind;
  for (const Kind& k : kKinds) {
    if (!options_.only.empty() && !options_.only.count(k.name)) continue;
    if (pick < k.weight) {
      kind = k.name;
      break;
    }
    pick -= k.weight;
  }
  const int coordinator = static_cast<int>(rng_() % ChaosCluster::kCoordinators);
  const std::string coordinator_name = "treatyd-" + std::to_string(coordinator);
  // A process restarted while PostgreSQL is down may give up starting: the two never overlap.
  const bool store_down = AnyActive("store-restart");
  const bool restarting = AnyActive("kill") || AnyActive("skew") || AnyActive("crash-point") ||
                          AnyActive("pause-point");
  Active a{.fault = kind};
  Status started = Status::Ok();
  if (kind == "kill") {
    auto targets = cluster_.Targets();
    a.target = targets[rng_() % targets.size()];
    if (store_down || Busy(a.target)) return;
    started = cluster_.Kill(a.target);
    a.heal = [this, t = a.target] { return Done(cluster_.Restart(t)); };
    a.heal_at = Clock::now() + Between(std::chrono::milliseconds(200), std::chrono::seconds(3));
  } else if (kind == "pause") {
    // Mostly the coordinator driving the most right now: a pause then catches drives midway,
    // between a call and its record (the stale owner's moment).
    int busiest = rng_() % 4 != 0 && !store_down ? cluster_.BusiestCoordinator() : -1;
    int paused = busiest >= 0 ? busiest : coordinator;
    a.target = "treatyd-" + std::to_string(paused);
    if (Busy(a.target)) return;
    started = cluster_.Pause(paused);
    a.heal = [this, paused] { return Done(cluster_.Resume(paused)); };
    a.heal_at = Clock::now() + Between(options_.lease * 3 / 2, options_.lease * 4);
  } else if (kind == "skew") {
    a.target = coordinator_name;
    if (store_down || Busy(a.target)) return;
    int seconds = rng_() % 2 == 0 ? 20 : -20;
    a.fault = "skew" + std::string(seconds > 0 ? "+" : "") + std::to_string(seconds) + "s";
    started = cluster_.Skew(coordinator, seconds);
    a.heal = [this, coordinator] { return Done(cluster_.Skew(coordinator, 0)); };
    a.heal_at = Clock::now() + Between(std::chrono::seconds(4), std::chrono::seconds(12));
  } else if (kind == "crash-point" || kind == "pause-point") {
    a.target = coordinator_name;
    if (store_down || Busy(a.target)) return;
    const bool crash = kind == "crash-point";
    std::string point =
        (rng_() % 2 == 0 ? std::string(kActionPoint) : kFaultPoints[rng_() % kFaultPoints.size()]) +
        ":" + std::to_string(1 + rng_() % 10);
    a.fault = kind + " " + point;
    started = cluster_.ArmFaultPoint(coordinator,
                                     crash ? "TREATY_CRASH_POINT" : "TREATY_PAUSE_POINT", point);
    const auto give_up = Clock::now() + std::chrono::seconds(10);
    const Duration hold = Between(options_.lease * 3 / 2, options_.lease * 4);
    auto resume_at = std::make_shared<std::optional<Clock::time_point>>();
    a.heal = [this, crash, coordinator, name = a.target, give_up, hold,
              resume_at]() -> Result<bool> {
      if (crash) {
        if (!cluster_.Alive(name)) return Done(cluster_.Restart(name));  // it reached the point
        if (Clock::now() < give_up) return false;
        return Done(cluster_.Skew(coordinator, 0));  // never reached: a plain restart disarms it
      }
      if (!resume_at->has_value()) {
        if (cluster_.Stopped(coordinator)) {
          *resume_at = Clock::now() + hold;  // frozen at its point: held past the lease
          return false;
        }
        if (Clock::now() < give_up) return false;
        return Done(cluster_.Skew(coordinator, 0));
      }
      if (Clock::now() < **resume_at) return false;
      return Done(cluster_.Resume(coordinator));
    };
    a.heal_at = Clock::now() + std::chrono::milliseconds(100);
  } else if (kind == "store-restart") {
    a.target = "postgres";
    if (restarting || Busy(a.target)) return;
    bool immediate = rng_() % 2 == 0;
    a.fault = immediate ? "store-restart-immediate" : "store-restart-fast";
    started = cluster_.pg().Stop(immediate);
    a.heal = [this] { return Done(cluster_.pg().Restart()); };
    a.heal_at = Clock::now() + Between(std::chrono::milliseconds(0), std::chrono::seconds(2));
  } else if (kind.rfind("broker-", 0) == 0) {
    a.target = "broker";
    if (Busy(a.target)) return;
    if (kind == "broker-down") {
      started = cluster_.broker().Command("down 1");
      a.heal = [this] { return Done(cluster_.broker().Command("up 1")); };
      a.heal_at = Clock::now() + Between(std::chrono::seconds(1), std::chrono::seconds(5));
    } else if (kind == "broker-slow") {
      started = cluster_.broker().Command("rtt 1 " + std::to_string(200 + rng_() % 600));
      a.heal = [this] { return Done(cluster_.broker().Command("rtt 1 0")); };
      a.heal_at = Clock::now() + Between(std::chrono::seconds(2), std::chrono::seconds(6));
    } else {
      // Produce (API key 0) requests fail with REQUEST_TIMED_OUT (7): the producer retries.
      std::string errors;
      for (uint64_t i = 0, n = 3 + rng_() % 8; i < n; ++i) errors += " 7";
      started = cluster_.broker().Command("request-errors 0" + errors);
      a.heal = [this] { return Done(cluster_.broker().Command("clear-errors 0")); };
      a.heal_at = Clock::now() + Between(std::chrono::seconds(2), std::chrono::seconds(5));
    }
  } else {
    bool orders = rng_() % 2 == 0;
    const auto& ops = orders ? kOrderOps : kInventoryOps;
    std::string service = orders ? "order-svc" : "inventory-svc";
    std::string op = ops[rng_() % ops.size()];
    a.target = service + ":" + op;
    if (Busy(a.target) || Busy(service)) return;
    std::string action = kind == "participant-fail"   ? "fail"
                         : kind == "participant-hang" ? "hang"
                                                      : "delay";
    int delay_ms = action == "delay" ? 100 + static_cast<int>(rng_() % 500) : 0;
    started = cluster_.ParticipantFault(service, op, action, delay_ms);
    a.heal = [this, service, op] { return Done(cluster_.ParticipantFault(service, op, "off")); };
    a.heal_at = Clock::now() +
                (action == "hang" ? Between(std::chrono::milliseconds(500), std::chrono::seconds(3))
                                  : Between(std::chrono::seconds(1), std::chrono::seconds(6)));
  }
  if (!started.ok()) {
    // A fault that could not be injected (e.g. its participant is down) is recorded and dropped.
    Record("fault-failed", a.fault, a.target, started.message());
    return;
  }
  Record("fault", a.fault, a.target);
  ++injected_[kind == "store-restart" ? a.fault : kind];
  active_.push_back(std::move(a));
}

Status Nemesis::HealDue(bool all) {
  for (size_t i = 0; i < active_.size();) {
    Active& a = active_[i];
    if (!all && Clock::now() < a.heal_at) {
      ++i;
      continue;
    }
    Result<bool> healed = a.heal();
    if (healed.ok() && *healed) {
      Record("heal", a.fault, a.target);
      active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(i));
      continue;
    }
    if (healed.ok()) {  // not yet
      a.heal_at = Clock::now() + std::chrono::milliseconds(50);
      ++i;
      continue;
    }
    Record("heal-failed", a.fault, a.target, healed.status().message());
    if (++a.failed_heals >= 20) {
      return Status::Internal("cannot heal " + a.fault + " of " + a.target + ": " +
                              healed.status().message());
    }
    a.heal_at = Clock::now() + std::chrono::milliseconds(500);
    ++i;
  }
  return Status::Ok();
}

Status Nemesis::RunUntil(Clock::time_point until) {
  auto gap = [&] {
    std::exponential_distribution<double> d(
        1.0 / std::chrono::duration<double>(options_.mean_gap).count());
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(d(rng_)));
  };
  Clock::time_point next = Clock::now() + gap();
  while (Clock::now() < until) {
    Status s = HealDue(false);
    if (!s.ok()) return s;
    if (Clock::now() >= next) {
      if (static_cast<int>(active_.size()) < options_.max_concurrent) StartOne();
      next = Clock::now() + gap();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the nemesis's tick
  }
  return HealAll();
}

Status Nemesis::HealAll() {
  for (int round = 0; !active_.empty() && round < 120; ++round) {
    Status s = HealDue(true);
    if (!s.ok()) return s;
    if (!active_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return active_.empty() ? Status::Ok() : Status::Internal("faults left unhealed");
}

}  // namespace treaty::chaos
