#include "coordinator/saga/saga_definition.h"

#include <Poco/DigestEngine.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Stringifier.h>
#include <Poco/SHA1Engine.h>
#include <Poco/URI.h>
#include <glob.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "common/protocol/protocol.h"
#include "coordinator/core/transaction.h"
#include "coordinator/saga/saga_processor.h"
#include "coordinator/saga/step_payloads.h"

namespace treaty::saga {
namespace {

using Poco::Dynamic::Var;
using Poco::JSON::Array;
using Poco::JSON::Object;

class Errors {
 public:
  explicit Errors(std::string file) : file_(std::move(file)) {}
  void Add(const YAML::Node& at, const std::string& key, const std::string& msg) {
    int line = at.IsDefined() ? at.Mark().line + 1 : 0;
    lines_.push_back(file_ + ":" + std::to_string(line) + ": " + key + ": " + msg);
  }
  bool empty() const { return lines_.empty(); }
  Status ToStatus() const {
    std::string all;
    for (const std::string& l : lines_) all += (all.empty() ? "" : "\n") + l;
    return Status::InvalidArgument(all);
  }

 private:
  std::string file_;
  std::vector<std::string> lines_;
};

bool IsPathChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

// Checks every ${...} in `text`: each must be `prefix.a.b`. Returns the problem, or "".
std::string CheckPlaceholders(const std::string& text, const std::string& prefix) {
  size_t pos = 0;
  while ((pos = text.find("${", pos)) != std::string::npos) {
    size_t end = text.find('}', pos);
    if (end == std::string::npos) return "unclosed ${ in \"" + text + "\"";
    std::string inner = text.substr(pos + 2, end - pos - 2);
    bool ok = inner.rfind(prefix + ".", 0) == 0 && inner.size() > prefix.size() + 1;
    if (ok) {
      std::string rest = inner.substr(prefix.size() + 1);
      bool last_dot = true;
      for (char c : rest) {
        if (c == '.') {
          if (last_dot) ok = false;
          last_dot = true;
        } else if (IsPathChar(c)) {
          last_dot = false;
        } else {
          ok = false;
        }
      }
      ok = ok && !last_dot;
    }
    if (!ok) return "bad placeholder ${" + inner + "} (write ${" + prefix + ".name})";
    pos = end + 1;
  }
  return "";
}

// YAML to JSON: quoted scalars stay strings; plain ones that read as numbers, booleans or null
// become those.
Var ToVar(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      Object::Ptr o = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
      for (auto it = n.begin(); it != n.end(); ++it) o->set(it->first.Scalar(), ToVar(it->second));
      return o;
    }
    case YAML::NodeType::Sequence: {
      Array::Ptr a = new Array();
      for (const auto& item : n) a->add(ToVar(item));
      return a;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "!") return s;  // quoted
      if (s == "true") return true;
      if (s == "false") return false;
      if (s == "null" || s == "~") return Var();
      char* end = nullptr;
      long long i = std::strtoll(s.c_str(), &end, 10);
      if (!s.empty() && *end == '\0') return static_cast<int64_t>(i);
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && *end == '\0') return d;
      return s;
    }
    default:
      return Var();
  }
}

// A ${steps...} placeholder in a payload: where it is, for an error naming its line and key.
struct OutputReference {
  std::string step;
  YAML::Node at;
  std::string key;
};

// Checks every placeholder of a payload: ${input.a.b}, or ${steps.<step>.output[.a.b]} (noted in
// `refs`, checked against the graph once every step is read).
void CheckPayload(const YAML::Node& n, const std::string& key, Errors& errors,
                  std::vector<OutputReference>& refs) {
  if (n.IsMap()) {
    for (auto it = n.begin(); it != n.end(); ++it) {
      CheckPayload(it->second, key + "." + it->first.Scalar(), errors, refs);
    }
  } else if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i)
      CheckPayload(n[i], key + "[" + std::to_string(i) + "]", errors, refs);
  } else if (n.IsScalar()) {
    const std::string& text = n.Scalar();
    // Each placeholder on its own: the input's are checked as before, the steps' by their rules.
    std::string inputs_only;
    size_t pos = 0;
    while (true) {
      size_t start = text.find("${", pos);
      if (start == std::string::npos) {
        inputs_only += text.substr(pos);
        break;
      }
      size_t end = text.find('}', start);
      if (end == std::string::npos) {
        inputs_only += text.substr(pos);
        break;
      }
      std::string one = text.substr(start, end + 1 - start);
      inputs_only += text.substr(pos, start - pos);
      if (one.rfind("${steps.", 0) == 0) {
        auto steps = core::StepOutputReferences(one);
        if (!steps.ok()) {
          errors.Add(n, key, steps.status().message());
        } else {
          for (const std::string& step : *steps) refs.push_back({step, n, key});
        }
      } else {
        inputs_only += one;
      }
      pos = end + 1;
    }
    std::string problem = CheckPlaceholders(inputs_only, "input");
    if (problem.rfind("bad placeholder", 0) == 0) {
      problem = problem.substr(0, problem.size() - 1) + " or ${steps.<step>.output.<field>})";
    }
    if (!problem.empty()) errors.Add(n, key, problem);
  }
}

// A retry policy: {attempts, backoff, max_backoff}, each optional.
std::optional<core::OpRetry> ParseRetry(const YAML::Node& n, const std::string& key,
                                        Errors& errors) {
  if (!n.IsMap()) {
    errors.Add(n, key, "must be a mapping of attempts, backoff, max_backoff");
    return std::nullopt;
  }
  core::OpRetry r;
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string k = it->first.Scalar();
    const YAML::Node v = it->second;
    if (k == "attempts") {
      char* end = nullptr;
      const std::string& text = v.IsScalar() ? v.Scalar() : "";
      long a = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || a < 1 || a > 1000) {
        errors.Add(v, key + ".attempts", "must be a whole number from 1 to 1000");
      } else {
        r.attempts = static_cast<int>(a);
      }
    } else if (k == "backoff" || k == "max_backoff") {
      auto d = v.IsScalar() ? ParseDuration(v.Scalar()) : std::nullopt;
      if (!d || d->count() <= 0 || *d > std::chrono::hours(24)) {
        errors.Add(v, key + "." + k,
                   "not a positive duration of at most 24h (write e.g. 500ms, 3s)");
      } else {
        (k == "backoff" ? r.backoff : r.max_backoff) = *d;
      }
    } else {
      errors.Add(it->first, key + "." + k,
                 "unknown key (expected one of: attempts, backoff, max_backoff)");
    }
  }
  if (r.backoff && r.max_backoff && *r.max_backoff < *r.backoff) {
    errors.Add(n, key + ".max_backoff", "must not be below backoff");
  }
  return r;
}

std::optional<Duration> ParseTimeout(const YAML::Node& t, const std::string& key, Errors& errors) {
  auto d = t.IsScalar() ? ParseDuration(t.Scalar()) : std::nullopt;
  if (!d || d->count() <= 0) {
    errors.Add(t, key, "not a positive duration (write e.g. 500ms, 3s)");
    return std::nullopt;
  }
  return d;
}

// Replaces ${env.NAME} in a URL; records an error when a variable is unset.
std::string ExpandEnv(const YAML::Node& n, const std::string& key, const Environment& env,
                      Errors& errors) {
  std::string text = n.Scalar();
  std::string problem = CheckPlaceholders(text, "env");
  if (!problem.empty()) {
    errors.Add(n, key, problem);
    return "";
  }
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t start = text.find("${", pos);
    if (start == std::string::npos) {
      out += text.substr(pos);
      break;
    }
    size_t end = text.find('}', start);
    out += text.substr(pos, start - pos);
    std::string name = text.substr(start + 6, end - start - 6);
    auto value = env ? env(name) : std::nullopt;
    if (!value) {
      errors.Add(n, key, "environment variable " + name + " is not set");
      return "";
    }
    out += *value;
    pos = end + 1;
  }
  return out;
}

std::string CheckUrl(const std::string& url) {
  try {
    Poco::URI uri(url);
    if (uri.getScheme() != "http") return "must be an http:// URL";
    if (uri.getHost().empty()) return "URL has no host";
  } catch (const Poco::Exception& e) {
    return "not a valid URL: " + e.message();
  }
  return "";
}

// Looks `path` (a.b.c) up in `input`.
std::optional<Var> Lookup(const Object::Ptr& input, const std::string& path) {
  Var cur = input;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (cur.type() != typeid(Object::Ptr)) return std::nullopt;
    Object::Ptr o = cur.extract<Object::Ptr>();
    if (!o->has(part)) return std::nullopt;
    cur = o->get(part);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

std::string TextOf(const Var& v) {
  if (v.isString()) return v.extract<std::string>();
  std::ostringstream out;
  Poco::JSON::Stringifier::condense(v, out);
  return out.str();
}

Result<Var> Fill(const Var& tmpl, const Object::Ptr& input) {
  if (tmpl.type() == typeid(Object::Ptr)) {
    Object::Ptr src = tmpl.extract<Object::Ptr>();
    Object::Ptr out = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
    for (const auto& [k, v] : *src) {
      auto filled = Fill(v, input);
      if (!filled.ok()) return filled.status();
      out->set(k, *filled);
    }
    return Var(out);
  }
  if (tmpl.type() == typeid(Array::Ptr)) {
    Array::Ptr src = tmpl.extract<Array::Ptr>();
    Array::Ptr out = new Array();
    for (size_t i = 0; i < src->size(); ++i) {
      auto filled = Fill(src->get(i), input);
      if (!filled.ok()) return filled.status();
      out->add(*filled);
    }
    return Var(out);
  }
  if (!tmpl.isString()) return tmpl;
  // Only ${input...}: ${steps...} placeholders stay for the processor to fill at the call.
  static constexpr std::string_view kInput = "${input.";
  std::string text = tmpl.extract<std::string>();
  size_t start = text.find(kInput);
  if (start == std::string::npos) return tmpl;
  // Exactly one placeholder: the input's value, with its type.
  if (start == 0 && text.back() == '}' && text.find("${", 2) == std::string::npos) {
    std::string path = text.substr(8, text.size() - 9);
    auto v = Lookup(input, path);
    if (!v) return Status::InvalidArgument("input." + path + " is missing");
    return *v;
  }
  std::string out;
  size_t pos = 0;
  while ((start = text.find(kInput, pos)) != std::string::npos) {
    size_t end = text.find('}', start);
    out += text.substr(pos, start - pos);
    std::string path = text.substr(start + 8, end - start - 8);
    auto v = Lookup(input, path);
    if (!v) return Status::InvalidArgument("input." + path + " is missing");
    out += TextOf(*v);
    pos = end + 1;
  }
  out += text.substr(pos);
  return Var(out);
}

std::string Sha1Hex(const std::string& text) {
  Poco::SHA1Engine sha1;
  sha1.update(text);
  return Poco::DigestEngine::digestToHex(sha1.digest());
}

// notify: {url, events}: the URL as the steps' (http(s), ${env...}), the events among
// committed, aborted, attention (absent: all three).
std::optional<SagaDefinition::Notify> ParseNotify(const YAML::Node& n, const Environment& env,
                                                  Errors& errors) {
  if (!n.IsMap()) {
    errors.Add(n, "notify", "must be a mapping of url and events");
    return std::nullopt;
  }
  SagaDefinition::Notify out;
  bool ok = true;
  for (auto it = n.begin(); it != n.end(); ++it) {
    const std::string k = it->first.Scalar();
    if (k != "url" && k != "events") {
      errors.Add(it->first, "notify." + k, "unknown key (expected one of: events, url)");
      ok = false;
    }
  }
  const YAML::Node u = n["url"];
  if (!u || !u.IsScalar() || u.Scalar().empty()) {
    errors.Add(u ? u : n, "notify.url", "is required (a URL)");
    ok = false;
  } else {
    out.url = ExpandEnv(u, "notify.url", env, errors);
    if (out.url.empty()) {
      ok = false;
    } else if (std::string problem = CheckUrl(out.url); !problem.empty()) {
      errors.Add(u, "notify.url", problem);
      ok = false;
    }
  }
  if (const YAML::Node e = n["events"]) {
    if (!e.IsSequence() || e.size() == 0) {
      errors.Add(e, "notify.events", "must be a non-empty list of committed, aborted, attention");
      ok = false;
    } else {
      for (size_t i = 0; i < e.size(); ++i) {
        const std::string name = e[i].IsScalar() ? e[i].Scalar() : "";
        if (name != "committed" && name != "aborted" && name != "attention") {
          errors.Add(e[i], "notify.events[" + std::to_string(i) + "]",
                     "\"" + name + "\" is not committed, aborted or attention");
          ok = false;
        } else if (std::find(out.events.begin(), out.events.end(), name) == out.events.end()) {
          out.events.push_back(name);
        }
      }
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

}  // namespace

Result<SagaDefinition> ParseSagaDefinition(std::string_view yaml_text, const std::string& file,
                                           const Environment& env) {
  Errors errors(file);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::ParserException& e) {
    return Status::InvalidArgument(file + ":" + std::to_string(e.mark.line + 1) +
                                   ": not valid YAML: " + e.msg);
  }
  if (Status s = CheckYamlSize(root, file); !s.ok()) return s;
  if (!root.IsMap())
    return Status::InvalidArgument(file + ":1: the file must be a mapping with saga and steps");
  SagaDefinition def;
  def.file = file;
  def.text = std::string(yaml_text);
  def.version = Sha1Hex(def.text).substr(0, 12);
  for (auto it = root.begin(); it != root.end(); ++it) {
    std::string key = it->first.Scalar();
    if (key != "saga" && key != "steps" && key != "notify")
      errors.Add(it->first, key, "unknown key (expected one of: notify, saga, steps)");
  }
  if (const YAML::Node n = root["notify"]) def.notify = ParseNotify(n, env, errors);
  const YAML::Node name = root["saga"];
  if (!name || !name.IsScalar() || !core::ValidId(name.Scalar(), core::kMaxBranchIdLength)) {
    errors.Add(name ? name : root, "saga",
               "a name of 1 to 64 characters of A-Z a-z 0-9 . _ : - is required");
  } else {
    def.name = name.Scalar();
  }
  const YAML::Node steps = root["steps"];
  if (!steps || !steps.IsSequence() || steps.size() == 0) {
    errors.Add(steps ? steps : root, "steps", "a non-empty list of steps is required");
    return errors.ToStatus();
  }
  std::set<std::string> names;
  std::map<std::string, YAML::Node> after_nodes;
  static const std::set<std::string> kStepKeys = {"name",
                                                  "action",
                                                  "compensate",
                                                  "after",
                                                  "timeout",
                                                  "payload",
                                                  "retry",
                                                  "compensate_timeout",
                                                  "compensate_retry",
                                                  "compensate_payload"};
  std::vector<std::pair<std::string, OutputReference>> refs;      // (step, reference)
  std::vector<std::pair<std::string, OutputReference>> own_refs;  // compensate_payload's
  for (size_t i = 0; i < steps.size(); ++i) {
    const YAML::Node step = steps[i];
    std::string at = "steps[" + std::to_string(i) + "]";
    if (!step.IsMap()) {
      errors.Add(step, at, "must be a mapping");
      continue;
    }
    SagaStep s;
    for (auto it = step.begin(); it != step.end(); ++it) {
      std::string key = it->first.Scalar();
      if (!kStepKeys.count(key)) {
        errors.Add(it->first, at + "." + key,
                   "unknown key (expected one of: action, after, compensate, compensate_payload, "
                   "compensate_retry, compensate_timeout, name, payload, retry, timeout)");
      }
    }
    const YAML::Node n = step["name"];
    if (!n || !n.IsScalar() || !core::ValidId(n.Scalar(), core::kMaxBranchIdLength)) {
      errors.Add(n ? n : step, at + ".name",
                 "a name of 1 to 64 characters of A-Z a-z 0-9 . _ : - is required");
    } else {
      s.name = n.Scalar();
      if (!names.insert(s.name).second) {
        errors.Add(n, at + ".name", "duplicate step name " + s.name);
      }
    }
    for (const char* op : {"action", "compensate"}) {
      const YAML::Node u = step[op];
      if (!u) {
        if (std::string(op) == "action") errors.Add(step, at + ".action", "is required (a URL)");
        continue;
      }
      if (!u.IsScalar()) {
        errors.Add(u, at + "." + op, "must be a URL");
        continue;
      }
      std::string url = ExpandEnv(u, at + "." + op, env, errors);
      if (url.empty()) continue;
      std::string problem = CheckUrl(url);
      if (!problem.empty()) {
        errors.Add(u, at + "." + op, problem);
        continue;
      }
      (std::string(op) == "action" ? s.action : s.compensate) = url;
    }
    if (const YAML::Node a = step["after"]) {
      if (!a.IsSequence()) {
        errors.Add(a, at + ".after", "must be a list of step names");
      } else {
        for (const auto& dep : a) s.after.push_back(dep.Scalar());
        after_nodes[s.name] = a;
      }
    }
    if (const YAML::Node t = step["timeout"]) s.timeout = ParseTimeout(t, at + ".timeout", errors);
    if (const YAML::Node t = step["compensate_timeout"]) {
      s.compensate_timeout = ParseTimeout(t, at + ".compensate_timeout", errors);
    }
    if (const YAML::Node r = step["retry"]) s.retry = ParseRetry(r, at + ".retry", errors);
    if (const YAML::Node r = step["compensate_retry"]) {
      s.compensate_retry = ParseRetry(r, at + ".compensate_retry", errors);
    }
    if (const YAML::Node p = step["payload"]) {
      std::vector<OutputReference> found;
      CheckPayload(p, at + ".payload", errors, found);
      for (auto& r : found) refs.emplace_back(s.name, std::move(r));
      s.payload = ToVar(p);
    }
    if (const YAML::Node p = step["compensate_payload"]) {
      std::vector<OutputReference> found;
      CheckPayload(p, at + ".compensate_payload", errors, found);
      for (auto& r : found) own_refs.emplace_back(s.name, std::move(r));
      s.compensate_payload = ToVar(p);
    }
    for (const char* key : {"compensate_timeout", "compensate_retry", "compensate_payload"}) {
      if (step[key] && !step["compensate"]) {
        errors.Add(step[key], at + "." + key, "applies to a step with compensate");
      }
    }
    def.steps.push_back(std::move(s));
  }
  if (errors.empty()) {
    std::vector<std::pair<std::string, std::vector<std::string>>> graph;
    for (const SagaStep& s : def.steps) graph.emplace_back(s.name, s.after);
    Status g = core::CheckSagaGraph(graph);
    if (!g.ok()) {
      // Point at the step the message names.
      std::string step =
          g.message().rfind("step ", 0) == 0
              ? g.message().substr(5, g.message().find(':') - 5)
              : g.message().substr(g.message().find(": ") + 2,
                                   g.message().find(" ->") - g.message().find(": ") - 2);
      size_t index = 0;
      for (; index < def.steps.size() && def.steps[index].name != step; ++index) {
      }
      YAML::Node where = after_nodes.count(step) ? after_nodes[step] : steps;
      errors.Add(where, "steps[" + std::to_string(index) + "].after", g.message());
    } else {
      // A payload names only outputs its step can have: of the steps it runs after.
      for (bool own : {false, true}) {
        for (const auto& [step, ref] : own ? own_refs : refs) {
          std::string payload = "\"${steps." + ref.step + ".output}\"";
          Status r = core::CheckOutputReferences(graph, step, payload, own);
          if (!r.ok()) errors.Add(ref.at, ref.key, r.message().substr(r.message().find(": ") + 2));
        }
      }
    }
  }
  if (!errors.empty()) return errors.ToStatus();
  return def;
}

Result<std::vector<SagaDefinition>> LoadSagaDefinitions(const std::vector<std::string>& patterns,
                                                        const std::string& base_dir,
                                                        const Environment& env) {
  std::vector<SagaDefinition> defs;
  std::vector<std::string> problems;
  std::map<std::string, std::string> seen;  // name -> file
  for (const std::string& pattern : patterns) {
    std::string full = !pattern.empty() && pattern[0] == '/' ? pattern : base_dir + "/" + pattern;
    glob_t g{};
    int rc = ::glob(full.c_str(), 0, nullptr, &g);
    std::vector<std::string> files;
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) files.emplace_back(g.gl_pathv[i]);
    ::globfree(&g);
    if (files.empty()) {
      problems.push_back(full + ": no saga definition file matches");
      continue;
    }
    for (const std::string& file : files) {
      auto text = ReadBoundedFile(file, kMaxYamlFileBytes);
      if (!text.ok()) {
        problems.push_back(text.status().message());
        continue;
      }
      auto def = ParseSagaDefinition(*text, file, env);
      if (!def.ok()) {
        problems.push_back(def.status().message());
        continue;
      }
      auto [it, fresh] = seen.emplace(def->name, file);
      if (!fresh) {
        problems.push_back(file + ":1: saga: " + def->name + " is defined in " + it->second +
                           " too");
        continue;
      }
      defs.push_back(std::move(*def));
    }
  }
  if (!problems.empty()) {
    std::string all;
    for (const std::string& p : problems) all += (all.empty() ? "" : "\n") + p;
    return Status::InvalidArgument(all);
  }
  return defs;
}

Result<std::vector<core::BranchSpec>> Instantiate(const SagaDefinition& def,
                                                  const Poco::JSON::Object::Ptr& input) {
  std::vector<core::BranchSpec> branches;
  for (const SagaStep& s : def.steps) {
    core::BranchSpec b;
    b.id = s.name;
    b.urls["action"] = s.action;
    if (!s.compensate.empty()) b.urls["compensate"] = s.compensate;
    b.after = s.after;
    b.timeout = s.timeout;
    b.retry = s.retry;
    if (!s.payload.isEmpty()) {
      auto filled = Fill(s.payload, input);
      if (!filled.ok()) return filled.status();
      std::ostringstream out;
      Poco::JSON::Stringifier::condense(*filled, out);
      b.payload_json = out.str();
    }
    if (!s.compensate.empty()) {
      core::OpSettings compensate{.timeout = s.compensate_timeout, .retry = s.compensate_retry};
      if (!s.compensate_payload.isEmpty()) {
        auto filled = Fill(s.compensate_payload, input);
        if (!filled.ok()) return filled.status();
        std::ostringstream out;
        Poco::JSON::Stringifier::condense(*filled, out);
        compensate.payload_json = out.str();
      }
      if (compensate.payload_json || compensate.timeout || compensate.retry) {
        b.op_settings[protocol::kCompensate] = std::move(compensate);
      }
    }
    branches.push_back(std::move(b));
  }
  return branches;
}

Result<core::BeginRequest> StartRequest(const SagaDefinition& def,
                                        const Poco::JSON::Object::Ptr& input) {
  auto branches = Instantiate(def, input);
  if (!branches.ok()) return branches.status();
  core::BeginRequest req;
  req.mode = core::Mode::kSaga;
  req.branches = std::move(*branches);
  req.definition = def.name + "@" + def.version;
  return req;
}

}  // namespace treaty::saga
