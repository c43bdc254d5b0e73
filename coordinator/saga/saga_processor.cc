#include "coordinator/saga/saga_processor.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "common/protocol/protocol.h"
#include "coordinator/saga/step_payloads.h"

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

// When an op with its own retry policy may be called again: its latest call's end plus its
// backoff. Ops without one follow the transaction's schedule (nullopt: due whenever driven).
std::optional<TimePoint> OwnDueTime(const BranchOp& op, DriveContext& ctx) {
  if (!op.retry || (!op.retry->backoff && !op.retry->max_backoff) || op.calls.empty()) {
    return std::nullopt;
  }
  const OpCall& last = op.calls.back();
  return last.started + std::chrono::duration_cast<Duration>(last.took) +
         ctx.Backoff(op.attempts, op.retry);
}

// Each succeeded action's output, by step.
std::map<std::string, std::string> Outputs(const Transaction& tx,
                                           const std::map<std::string, Step>& steps) {
  std::map<std::string, std::string> out;
  for (const auto& [name, s] : steps) {
    const BranchOp& a = tx.ops[s.action];
    if (a.status == OpStatus::kSucceeded && !a.output_json.empty()) out[name] = a.output_json;
  }
  return out;
}

// Schedules the next drive when nothing can be called now: the ops called in this drive
// (`deferred`) wait for their backoff (their own policy's, or treaty.yaml's at the transaction's
// schedule), the others with their own policy until `next_own_due`; never past `not_after`.
Status WaitForDue(Transaction& tx, DriveContext& ctx, const std::set<size_t>& deferred,
                  std::optional<TimePoint> next_own_due, std::optional<TimePoint> not_after) {
  std::vector<size_t> by_schedule;
  for (size_t i : deferred) {
    if (auto due = OwnDueTime(tx.ops[i], ctx)) {
      next_own_due = next_own_due ? std::min(*next_own_due, *due) : *due;
    } else {
      by_schedule.push_back(i);
    }
  }
  if (!next_own_due) return ctx.RetryLater(tx, MaxAttempts(tx, by_schedule), not_after);
  TimePoint at = *next_own_due;
  if (!by_schedule.empty()) {
    at = std::min(at,
                  ctx.Now() + ctx.Backoff(std::max(1, MaxAttempts(tx, by_schedule)), std::nullopt));
  }
  if (not_after && at > *not_after) at = *not_after;
  return ctx.WakeAt(tx, at);
}

}  // namespace

Status CheckOutputReferences(
    const std::vector<std::pair<std::string, std::vector<std::string>>>& steps,
    const std::string& step, const std::string& payload, bool own_output) {
  if (!NamesStepOutputs(payload)) return Status::Ok();
  auto refs = StepOutputReferences(payload);
  if (!refs.ok()) return Status::InvalidArgument("step " + step + ": " + refs.status().message());
  std::map<std::string, Step> graph;
  for (const auto& [name, after] : steps) graph[name].after = after;
  for (const std::string& ref : *refs) {
    if (ref == step && own_output) continue;
    if (!graph.count(ref)) {
      return Status::InvalidArgument("step " + step + ": names the output of step " + ref +
                                     ", which does not exist");
    }
    if (!DependsOn(graph, step, ref)) {
      return Status::InvalidArgument(
          "step " + step + ": names the output of step " + ref +
          (ref == step
               ? ", its own (only its compensation's payload can)"
               : ", which is not one it runs after (list it, or a step after it, in after)"));
    }
  }
  return Status::Ok();
}

std::vector<std::string> SagaProcessor::OpsDueIn(TxStatus status) const {
  if (status == TxStatus::kActive) return {protocol::kAction};
  if (status == TxStatus::kAborting) return {protocol::kCompensate};
  return {};
}

Status SagaProcessor::CanForce(const Transaction& tx, TxStatus to) const {
  if (IsFinal(tx.status)) {
    return Status::Conflict("it is " + std::string(StatusName(tx.status)) + " already");
  }
  if (to == TxStatus::kCommitted && tx.status == TxStatus::kAborting) {
    return Status::Conflict(
        "compensation began (it is aborting): steps may have been undone already; force it "
        "aborted instead");
  }
  return Status::Ok();
}

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
  if (Status s = CheckSagaGraph(graph); !s.ok()) return s;
  for (const BranchOp& op : tx.ops) {
    Status s = CheckOutputReferences(graph, op.branch_id, op.payload_json,
                                     /*own_output=*/op.op == protocol::kCompensate);
    if (!s.ok()) return s;
  }
  return Status::Ok();
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
      std::optional<TimePoint> next_own_due;  // the earliest op with its own policy not yet due
      std::string give_up;                    // why the saga stops going forward, if it does
      bool all_done = true;
      bool compensable_pending = false;
      for (const auto& [name, s] : steps) {
        const BranchOp& action = tx.ops[s.action];
        if (action.status == OpStatus::kSucceeded) continue;
        all_done = false;
        if (action.status == OpStatus::kRefused && s.compensate) {
          give_up = "step " + name + " refused: " + action.last_error;
          break;
        }
        if (!DepsSucceeded(tx, steps, s)) continue;
        if (s.compensate) compensable_pending = true;
        if (action.retry && action.retry->attempts > 0 &&
            action.attempts >= action.retry->attempts) {
          give_up = "step " + name + " gave up after " + std::to_string(action.attempts) +
                    " attempts: " + action.last_error;
          break;
        }
        if (deferred.count(s.action)) continue;
        if (auto due = OwnDueTime(action, ctx); due && *due > now) {
          next_own_due = next_own_due ? std::min(*next_own_due, *due) : *due;
          continue;
        }
        ready.push_back(s.action);
      }
      if (!give_up.empty()) {
        Status st = ctx.Transition(tx, TxStatus::kAborting, give_up);
        if (!st.ok()) return st;
        continue;  // compensate
      }
      if (all_done) return ctx.Transition(tx, TxStatus::kCommitted, "every step succeeded");
      // The deadline ends the forward path only while a step that can be undone is unfinished.
      if (now >= tx.deadline && compensable_pending) {
        Status st =
            ctx.Transition(tx, TxStatus::kAborting, "deadline passed before every step succeeded");
        if (!st.ok()) return st;
        continue;
      }
      const std::optional<TimePoint> not_after =
          compensable_pending ? std::optional<TimePoint>(tx.deadline) : std::nullopt;
      if (ready.empty()) return WaitForDue(tx, ctx, deferred, next_own_due, not_after);
      // Payloads that name earlier steps' outputs are built now, from the stored outputs.
      DriveContext::CallOptions call{.keep_outputs = true};
      const std::map<std::string, std::string> outputs = Outputs(tx, steps);
      for (size_t i : ready) {
        const BranchOp& op = tx.ops[i];
        if (!NamesStepOutputs(op.payload_json)) {
          call.payloads.push_back(op.payload_json);
          continue;
        }
        auto built = payloads_.Render(op.payload_json, outputs, /*missing_as_null=*/false);
        if (!built.ok()) {
          give_up = "step " + op.branch_id + " cannot be built: " + built.status().message();
          break;
        }
        call.payloads.push_back(std::move(*built));
      }
      if (!give_up.empty()) {
        Status st = ctx.Transition(tx, TxStatus::kAborting, give_up);
        if (!st.ok()) return st;
        continue;
      }
      Status s = ctx.CallOps(tx, ready, call);
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
      std::optional<TimePoint> next_own_due;
      const TimePoint now = ctx.Now();
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
        if (!dependents_done || deferred.count(*s.compensate)) continue;
        if (auto due = OwnDueTime(tx.ops[*s.compensate], ctx); due && *due > now) {
          next_own_due = next_own_due ? std::min(*next_own_due, *due) : *due;
          continue;
        }
        callable.push_back(*s.compensate);
      }
      if (all_compensated) {
        Status s = ctx.SetAttention(tx, "");
        if (!s.ok()) return s;
        return ctx.Transition(tx, TxStatus::kAborted, tx.reason);
      }
      if (callable.empty()) return WaitForDue(tx, ctx, deferred, next_own_due, std::nullopt);
      // A compensation sees its own step's output too (null when its action's answer never came).
      DriveContext::CallOptions call;
      const std::map<std::string, std::string> outputs = Outputs(tx, steps);
      for (size_t i : callable) {
        const BranchOp& op = tx.ops[i];
        auto built = NamesStepOutputs(op.payload_json)
                         ? payloads_.Render(op.payload_json, outputs, /*missing_as_null=*/true)
                         : Result<std::string>(op.payload_json);
        // Only a stored payload that is not JSON fails here: it is sent as it was accepted.
        call.payloads.push_back(built.ok() ? std::move(*built) : op.payload_json);
      }
      Status s = ctx.CallOps(tx, callable, call);
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
        } else if (o.status == OpStatus::kPending &&
                   o.attempts >= (o.retry && o.retry->attempts > 0 ? o.retry->attempts
                                                                   : kAttentionAfterAttempts)) {
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
