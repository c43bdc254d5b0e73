#include "coordinator/saga/step_payloads.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/ParseHandler.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>

#include <optional>
#include <sstream>

namespace treaty::core {
namespace {

using Poco::Dynamic::Var;
using Poco::JSON::Array;
using Poco::JSON::Object;

constexpr std::string_view kOpen = "${steps.";
constexpr std::string_view kOutput = ".output";

// One ${steps.<step>.output[.path]} placeholder: the step, and the path inside its output.
struct Placeholder {
  std::string step;
  std::string path;  // "" for the whole output
};

// `inner` is the text between "${" and "}".
std::optional<Placeholder> ParsePlaceholder(std::string_view inner) {
  if (inner.substr(0, kOpen.size() - 2) != kOpen.substr(2)) return std::nullopt;
  std::string_view rest = inner.substr(kOpen.size() - 2);
  for (size_t at = rest.find(kOutput); at != std::string_view::npos;
       at = rest.find(kOutput, at + 1)) {
    std::string_view after = rest.substr(at + kOutput.size());
    if (at == 0 || !(after.empty() || after.front() == '.')) continue;
    Placeholder p{std::string(rest.substr(0, at)), ""};
    if (!after.empty()) {
      p.path = std::string(after.substr(1));
      if (p.path.empty() || p.path.back() == '.' || p.path.find("..") != std::string::npos) {
        return std::nullopt;
      }
    }
    return p;
  }
  return std::nullopt;
}

std::string Condense(const Var& v) {
  std::ostringstream out;
  Poco::JSON::Stringifier::condense(v, out);
  return out.str();
}

// `path` (a.b.0.c) looked up in `v`: object keys, and array indexes.
std::optional<Var> Lookup(Var v, const std::string& path) {
  size_t start = 0;
  while (!path.empty() && start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (v.type() == typeid(Object::Ptr)) {
      Object::Ptr o = v.extract<Object::Ptr>();
      if (!o->has(part)) return std::nullopt;
      v = o->get(part);
    } else if (v.type() == typeid(Array::Ptr)) {
      Array::Ptr a = v.extract<Array::Ptr>();
      char* end = nullptr;
      unsigned long i = std::strtoul(part.c_str(), &end, 10);
      if (part.empty() || *end != '\0' || i >= a->size()) return std::nullopt;
      v = a->get(static_cast<unsigned>(i));
    } else {
      return std::nullopt;
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return v;
}

Var Parse(const std::string& json) {
  Poco::JSON::Parser parser(new Poco::JSON::ParseHandler(/*preserveObjectOrder=*/true));
  return parser.parse(json);
}

class JsonRenderer : public StepPayloads {
 public:
  Result<std::string> Render(const std::string& payload,
                             const std::map<std::string, std::string>& outputs,
                             bool missing_as_null) const override {
    try {
      // Key order is kept: the participant gets its fields as written.
      Var tmpl = Parse(payload);
      std::map<std::string, Var> parsed;
      for (const auto& [step, json] : outputs) {
        if (!json.empty()) parsed[step] = Parse(json);
      }
      auto filled = Fill(tmpl, parsed, missing_as_null);
      if (!filled.ok()) return filled.status();
      return Condense(*filled);
    } catch (const std::exception& e) {
      return Status::InvalidArgument(std::string("not valid JSON: ") + e.what());
    }
  }

 private:
  static Result<Var> Value(const Placeholder& p, const std::map<std::string, Var>& outputs,
                           bool missing_as_null) {
    const std::string name = "steps." + p.step + ".output" + (p.path.empty() ? "" : "." + p.path);
    auto it = outputs.find(p.step);
    std::optional<Var> v;
    if (it != outputs.end()) v = Lookup(it->second, p.path);
    if (v) return *v;
    if (missing_as_null) return Var();
    if (it == outputs.end()) {
      return Status::InvalidArgument(name + " is missing: step " + p.step +
                                     " kept no output (its answer was not JSON of at most 16 KiB)");
    }
    return Status::InvalidArgument(name + " is missing");
  }

  static Result<Var> Fill(const Var& tmpl, const std::map<std::string, Var>& outputs,
                          bool missing_as_null) {
    if (tmpl.type() == typeid(Object::Ptr)) {
      Object::Ptr src = tmpl.extract<Object::Ptr>();
      Object::Ptr out = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
      for (const std::string& k : src->getNames()) {  // in the order written
        auto filled = Fill(src->get(k), outputs, missing_as_null);
        if (!filled.ok()) return filled.status();
        out->set(k, *filled);
      }
      return Var(out);
    }
    if (tmpl.type() == typeid(Array::Ptr)) {
      Array::Ptr src = tmpl.extract<Array::Ptr>();
      Array::Ptr out = new Array();
      for (size_t i = 0; i < src->size(); ++i) {
        auto filled = Fill(src->get(static_cast<unsigned>(i)), outputs, missing_as_null);
        if (!filled.ok()) return filled.status();
        out->add(*filled);
      }
      return Var(out);
    }
    if (!tmpl.isString()) return tmpl;
    const std::string text = tmpl.extract<std::string>();
    if (text.find(kOpen) == std::string::npos) return tmpl;
    // Exactly one placeholder: the value, with its JSON type.
    if (text.rfind(kOpen, 0) == 0 && text.back() == '}' && text.find('}') == text.size() - 1) {
      auto p = ParsePlaceholder(std::string_view(text).substr(2, text.size() - 3));
      if (p) return Value(*p, outputs, missing_as_null);
    }
    std::string out;
    size_t pos = 0;
    size_t start;
    while ((start = text.find(kOpen, pos)) != std::string::npos) {
      size_t end = text.find('}', start);
      if (end == std::string::npos) break;
      out += text.substr(pos, start - pos);
      auto p = ParsePlaceholder(std::string_view(text).substr(start + 2, end - start - 2));
      if (!p) {
        out += text.substr(start, end + 1 - start);  // not ours: left as written
      } else {
        auto v = Value(*p, outputs, missing_as_null);
        if (!v.ok()) return v.status();
        out += v->isString() ? v->extract<std::string>() : Condense(*v);
      }
      pos = end + 1;
    }
    out += text.substr(pos);
    return Var(out);
  }
};

}  // namespace

const StepPayloads& JsonStepPayloads() {
  static const JsonRenderer renderer;
  return renderer;
}

bool NamesStepOutputs(const std::string& payload) {
  return payload.find(kOpen) != std::string::npos;
}

Result<std::vector<std::string>> StepOutputReferences(const std::string& text) {
  std::vector<std::string> steps;
  size_t pos = 0;
  size_t start;
  while ((start = text.find(kOpen, pos)) != std::string::npos) {
    size_t end = text.find('}', start);
    if (end == std::string::npos) {
      return Status::InvalidArgument("unclosed ${ in \"" + text.substr(start, 60) + "\"");
    }
    std::string inner = text.substr(start + 2, end - start - 2);
    auto p = ParsePlaceholder(inner);
    if (!p) {
      return Status::InvalidArgument("bad placeholder ${" + inner +
                                     "} (write ${steps.<step>.output} or "
                                     "${steps.<step>.output.<field>})");
    }
    steps.push_back(p->step);
    pos = end + 1;
  }
  return steps;
}

}  // namespace treaty::core
