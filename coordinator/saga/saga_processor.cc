#include "coordinator/saga/saga_processor.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "common/protocol/protocol.h"

namespace treaty::core {
namespace {

constexpr int kAttentionAfterAttempts = 5;

struct Step {
  size_t action;                     // index into tx.ops
  std::optional<size_t> compensate;  // none: forward only
  std::vector<std::string> after;
};

std::map<std::string, Step> StepsOf(const Transaction& tx) {
  std::map<std::string, Step> steps;
  for (size_t i = 0; i < tx.ops.size(); ++i) {
    const BranchOp& op = tx.ops[i];
    if (op.op == protocol::kAction) {
      steps[op.branch_id].action = i;
      steps[op.branch_id].after = op.after;
    }
  }
  for (size_t i = 0; i < tx.ops.size(); ++i) {
    if (tx.ops[i].op == protocol::kCompensate) steps[tx.ops[i].branch_id].compensate = i;
  }
  return steps;
}

bool DepsSucceeded(const Transaction& tx, const std::map<std::string, Step>& steps, const Step& s) {
  return std::all_of(s.after.begin(), s.after.end(), [&](const std::string& dep) {
    auto it = steps.find(dep);
    return it != steps.end() && tx.ops[it->second.action].status == OpStatus::kSucceeded;
  });
}

// Whether step `from` needs step `to` to have succeeded first, directly or through other steps.
bool DependsOn(const std::map<std::string, Step>& steps, const std::string& from,
               const std::string& to) {
  std::vector<std::string> todo = {from};
  std::set<std::string> seen;
  while (!todo.empty()) {
    std::string at = std::move(todo.back());
    todo.pop_back();
    auto it = steps.find(at);
    if (it == steps.end()) continue;
    for (const std::string& dep : it->second.after) {
      if (dep == to) return true;
      if (seen.insert(dep).second) todo.push_back(dep);
    }
  }
  return false;
}

int MaxAttempts(const Transaction& tx, const std::vector<size_t>& idx) {
  int m = 0;
  for (size_t i : idx) m = std::max(m, tx.ops[i].attempts);
  return m;
}

}  // namespace

const std::vector<std::string>& SagaProcessor::BranchOps() const {
  static const std::vector<std::string> kOps = {protocol::kAction, protocol::kCompensate};
  return kOps;
}

const std::vector<std::string>& SagaProcessor::RequiredOps(bool) const {
  static const std::vector<std::string> kOps = {protocol::kAction};
  return kOps;
}

Status CheckSagaGraph(const std::vector<std::pair<std::string, std::vector<std::string>>>& steps) {
  std::map<std::string, const std::vector<std::string>*> by_name;
  for (const auto& [name, after] : steps) by_name[name] = &after;
  for (const auto& [name, after] : steps) {
    for (const std::string& dep : after) {
      if (!by_name.count(dep)) {
        return Status::InvalidArgument("step " + name + ": after names unknown step " + dep);
      }
    }
  }
  // Depth-first search for a cycle; the path is reported.
  std::map<std::string, int> state;  // 0 new, 1 on the path, 2 done
  std::vector<std::string> path;
  std::function<std::optional<std::string>(const std::string&)> visit =
      [&](const std::string& n) -> std::optional<std::string> {
    state[n] = 1;
    path.push_back(n);
    for (const std::string& dep : *by_name[n]) {
      if (state[dep] == 1) {
        std::string cycle;
        auto from = std::find(path.begin(), path.end(), dep);
        for (auto it = from; it != path.end(); ++it) cycle += *it + " -> ";
        return cycle + dep;
      }
      if (state[dep] == 0) {
        if (auto c = visit(dep)) return c;
      }
    }
    path.pop_back();
    state[n] = 2;
    return std::nullopt;
  };
  for (const auto& [name, after] : steps) {
    if (state[name] == 0) {
      if (auto c = visit(name)) return Status::InvalidArgument("steps form a cycle: " + *c);
    }
  }
  return Status::Ok();
}

Status SagaProcessor::Plan(const BeginRequest& request, const PlanDefaults& defaults,
                           Transaction& tx) const {
  if (!request.branches) {
    return Status::InvalidField("branches", "a saga is submitted whole: branches are required");
  }
  if (Status s = Processor::Plan(request, defaults, tx); !s.ok()) return s;
  std::vector<std::pair<std::string, std::vector<std::string>>> graph;
  for (const BranchSpec& b : *request.branches) graph.emplace_back(b.id, b.after);
  return CheckSagaGraph(graph);
}

Status SagaProcessor::Drive(Transaction& tx, DriveContext& ctx) {
  // Ops that answered "unknown" in this drive wait for their backoff, while others go on.
  std::set<size_t> deferred;
  for (int pass = 0; pass < 256; ++pass) {
    if (IsFinal(tx.status)) return Status::Ok();
    std::map<std::string, Step> steps = StepsOf(tx);

    if (tx.status == TxStatus::kActive) {
      TimePoint now = ctx.Now();
      std::vector<size_t> ready;
      bool all_done = true;
      bool compensable_pending = false;
      for (const auto& [name, s] : steps) {
        if (tx.status != TxStatus::kActive) break;
        const BranchOp& action = tx.ops[s.action];
        if (action.status == OpStatus::kSucceeded) continue;
        all_done = false;
        if (action.status == OpStatus::kRefused && s.compensate) {
          Status st = ctx.Transition(tx, TxStatus::kAborting,
                                     "step " + name + " refused: " + action.last_error);
          if (!st.ok()) return st;
          break;
        }
        if (DepsSucceeded(tx, steps, s)) {
          if (s.compensate) compensable_pending = true;
          if (!deferred.count(s.action)) ready.push_back(s.action);
        }
      }
      if (tx.status != TxStatus::kActive) continue;  // a refusal: compensate
      if (all_done) return ctx.Transition(tx, TxStatus::kCommitted, "every step succeeded");
      // The deadline ends the forward path only while a step that can be undone is unfinished.
      if (now >= tx.deadline && compensable_pending) {
        Status st =
            ctx.Transition(tx, TxStatus::kAborting, "deadline passed before every step succeeded");
        if (!st.ok()) return st;
        continue;
      }
      if (ready.empty()) {
        std::vector<size_t> waiting(deferred.begin(), deferred.end());
        return ctx.RetryLater(
            tx, MaxAttempts(tx, waiting),
            compensable_pending ? std::optional<TimePoint>(tx.deadline) : std::nullopt);
      }
      Status s = ctx.CallOps(tx, ready);
      if (!s.ok()) return s;
      for (size_t i : ready) {
        // Unknown, or a forward-only step's refusal (retried like an unknown outcome).
        bool acts =
            tx.ops[i].status == OpStatus::kSucceeded ||
            (tx.ops[i].status == OpStatus::kRefused && steps[tx.ops[i].branch_id].compensate);
        if (!acts) deferred.insert(i);
      }
      continue;  // new steps may be ready, a refusal to act on, or only waiting left
    }

    if (tx.status == TxStatus::kAborting) {
      // Every step that can be undone and did not refuse its action, whatever its action's
      // recorded state: a coordinator that lost its lease mid-drive (paused, partitioned) may
      // have run an action whose outcome was never recorded, or may still send one late. The
      // participant's barrier turns the compensation of a step that never ran into nothing
      // (null compensation) and refuses its action if it arrives afterwards.
      std::set<std::string> targets;
      for (const auto& [name, s] : steps) {
        if (!s.compensate) continue;
        if (tx.ops[s.action].status == OpStatus::kRefused) continue;
        targets.insert(name);
      }
      std::vector<size_t> callable;
      bool all_compensated = true;
      for (const std::string& name : targets) {
        const Step& s = steps[name];
        if (tx.ops[*s.compensate].status == OpStatus::kSucceeded) continue;
        all_compensated = false;
        // Reverse order: wait for every target that depends on this one, also through steps
        // that are not compensated themselves.
        bool dependents_done = true;
        for (const std::string& other : targets) {
          const Step& o = steps[other];
          if (other != name && DependsOn(steps, other, name) &&
              tx.ops[*o.compensate].status != OpStatus::kSucceeded) {
            dependents_done = false;
          }
        }
        if (dependents_done && !deferred.count(*s.compensate)) callable.push_back(*s.compensate);
      }
      if (all_compensated) {
        Status s = ctx.SetAttention(tx, "");
        if (!s.ok()) return s;
        return ctx.Transition(tx, TxStatus::kAborted, tx.reason);
      }
      if (callable.empty()) {
        std::vector<size_t> waiting(deferred.begin(), deferred.end());
        return ctx.RetryLater(tx, MaxAttempts(tx, waiting), std::nullopt);
      }
      Status s = ctx.CallOps(tx, callable);
      if (!s.ok()) return s;
      std::string attention;
      for (size_t i : callable) {
        if (tx.ops[i].status != OpStatus::kSucceeded) deferred.insert(i);
      }
      for (size_t i : callable) {
        const BranchOp& o = tx.ops[i];
        if (o.status == OpStatus::kRefused) {
          attention = "step " + o.branch_id +
                      " refused its compensation (a participant bug); retrying: " + o.last_error;
        } else if (o.status == OpStatus::kPending && o.attempts >= kAttentionAfterAttempts) {
          attention = "step " + o.branch_id + " compensation still unanswered after " +
                      std::to_string(o.attempts) + " attempts: " + o.last_error;
        }
      }
      if (!attention.empty()) {
        s = ctx.SetAttention(tx, attention);
        if (!s.ok()) return s;
      }
      continue;
    }
    return Status::Internal("a saga cannot be " + std::string(StatusName(tx.status)));
  }
  return Status::Internal("no progress driving saga " + tx.gid);
}

}  // namespace treaty::core
