#include "cli/saga_plan.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <algorithm>
#include <map>

#include "coordinator/saga/saga_definition.h"
#include "coordinator/saga/step_payloads.h"

namespace treaty::cli {
namespace {

std::string Join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const std::string& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

std::string Millis(Duration d) { return std::to_string(d.count()) + "ms"; }

std::string RetryText(const core::OpRetry& r) {
  std::vector<std::string> parts;
  if (r.attempts > 0) parts.push_back("attempts " + std::to_string(r.attempts));
  if (r.backoff) parts.push_back("backoff " + Millis(*r.backoff));
  if (r.max_backoff) parts.push_back("max_backoff " + Millis(*r.max_backoff));
  return Join(parts, ", ");
}

}  // namespace

int PrintSagaPlan(const std::string& file, const std::string& input_json, const Environment& env,
                  std::ostream& out, std::ostream& err) {
  auto text = ReadBoundedFile(file, kMaxYamlFileBytes);
  if (!text.ok()) {
    err << text.status().message() << "\n";
    return 2;
  }
  auto def = saga::ParseSagaDefinition(*text, file, env);
  if (!def.ok()) {
    err << def.status().message() << "\n";
    return 2;
  }
  Poco::JSON::Object::Ptr input;
  try {
    Poco::JSON::Parser parser;
    input = parser.parse(input_json.empty() ? "{}" : input_json).extract<Poco::JSON::Object::Ptr>();
  } catch (const std::exception& e) {
    err << "treatyctl: --input must be a JSON object: " << e.what() << "\n";
    return 2;
  }
  auto branches = saga::Instantiate(*def, input);
  if (!branches.ok()) {
    err << "treatyctl: " << branches.status().message() << "\n";
    return 2;
  }
  // Each step's level: 1 + the deepest step it runs after (steps on one level run together).
  std::map<std::string, int> level;
  for (bool changed = true; changed;) {
    changed = false;
    for (const saga::SagaStep& s : def->steps) {
      int l = 1;
      for (const std::string& a : s.after) l = std::max(l, level.count(a) ? level[a] + 1 : 0);
      if (level[s.name] != l) {
        level[s.name] = l;
        changed = true;
      }
    }
  }
  int depth = 0;
  for (const auto& [name, l] : level) depth = std::max(depth, l);

  out << "saga " << def->name << "@" << def->version << " (" << file << ")\n\n";
  out << "order (the steps of one line run in parallel):\n";
  for (int l = 1; l <= depth; ++l) {
    std::vector<std::string> names;
    for (const saga::SagaStep& s : def->steps) {
      if (level[s.name] == l) names.push_back(s.name);
    }
    out << "  " << l << ". " << Join(names, ", ") << "\n";
  }
  out << "\ncalls (${steps...} is filled from that step's output at the call):\n";
  for (size_t i = 0; i < def->steps.size(); ++i) {
    const saga::SagaStep& s = def->steps[i];
    const core::BranchSpec& b = (*branches)[i];
    out << "  " << s.name << (s.after.empty() ? "" : "  (after " + Join(s.after, ", ") + ")")
        << "\n";
    out << "    action      POST " << s.action << "\n";
    out << "                payload " << b.payload_json << "\n";
    std::vector<std::string> policy;
    if (s.timeout) policy.push_back("timeout " + Millis(*s.timeout));
    if (s.retry) policy.push_back("retry " + RetryText(*s.retry));
    if (!policy.empty()) out << "                " << Join(policy, "; ") << "\n";
    if (s.compensate.empty()) {
      out << "    (no compensation: goes forward only)\n";
      continue;
    }
    auto c = b.op_settings.find("compensate");
    out << "    compensate  POST " << s.compensate << "\n";
    out << "                payload "
        << (c != b.op_settings.end() && c->second.payload_json ? *c->second.payload_json
                                                               : b.payload_json)
        << "\n";
    policy.clear();
    if (s.compensate_timeout) {
      policy.push_back("timeout " + Millis(*s.compensate_timeout));
    } else if (s.timeout) {
      policy.push_back("timeout " + Millis(*s.timeout));
    }
    if (s.compensate_retry) policy.push_back("retry " + RetryText(*s.compensate_retry));
    if (!policy.empty()) out << "                " << Join(policy, "; ") << "\n";
  }
  // Compensation runs a step's after every step that depends on it: deepest level first.
  out << "\ncompensation order (after a refusal, every step with a compensation, deepest first):\n";
  int n = 0;
  for (int l = depth; l >= 1; --l) {
    std::vector<std::string> names;
    for (const saga::SagaStep& s : def->steps) {
      if (level[s.name] == l && !s.compensate.empty()) names.push_back(s.name);
    }
    if (!names.empty()) out << "  " << ++n << ". " << Join(names, ", ") << "\n";
  }
  if (n == 0) out << "  (none: no step has a compensation)\n";
  return 0;
}

}  // namespace treaty::cli
