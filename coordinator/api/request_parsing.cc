#include "coordinator/api/request_parsing.h"

#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeParser.h>
#include <Poco/DigestEngine.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>
#include <Poco/SHA1Engine.h>
#include <Poco/URI.h>

#include <algorithm>
#include <regex>
#include <sstream>

namespace treaty::api {

using http::ApiResponse;
using http::JsonError;
using Poco::JSON::Array;
using Poco::JSON::Object;

namespace {

// The path (e.g. "branches[0].payload.note") of the first key or string in `v` that holds the
// character U+0000, which PostgreSQL cannot store (and would cut a key at); nullopt if none.
std::optional<std::string> NulAt(const Poco::Dynamic::Var& v, const std::string& path) {
  if (v.type() == typeid(Object::Ptr)) {
    for (const auto& [key, value] : *v.extract<Object::Ptr>()) {
      const std::string at = path.empty() ? key : path + "." + key;
      if (key.find('\0') != std::string::npos) return at;
      if (auto found = NulAt(value, at)) return found;
    }
  } else if (v.type() == typeid(Array::Ptr)) {
    const Array& a = *v.extract<Array::Ptr>();
    for (size_t i = 0; i < a.size(); ++i) {
      if (auto found = NulAt(a.get(i), path + "[" + std::to_string(i) + "]")) return found;
    }
  } else if (v.isString() && v.extract<std::string>().find('\0') != std::string::npos) {
    return path;
  }
  return std::nullopt;
}

}  // namespace

bool HasNulCharacter(const std::string& json) {
  for (size_t at = json.find("\\u0000"); at != std::string::npos;
       at = json.find("\\u0000", at + 1)) {
    size_t backslashes = 0;
    while (backslashes < at && json[at - 1 - backslashes] == '\\') ++backslashes;
    if (backslashes % 2 == 0) return true;
  }
  return false;
}

std::string Stringify(const Poco::Dynamic::Var& v) {
  std::ostringstream out;
  Poco::JSON::Stringifier::condense(v, out);
  return out.str();
}

std::variant<Object::Ptr, ApiResponse> ParseObject(const std::string& body, bool empty_ok) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
    if (empty_ok) return Object::Ptr(new Object());
    return JsonError(400, "invalid_json", "the request body is empty; a JSON object is expected");
  }
  try {
    Poco::JSON::Parser parser;
    Poco::Dynamic::Var v = parser.parse(body);
    if (v.type() != typeid(Object::Ptr)) {
      return JsonError(400, "invalid_json", "the request body must be a JSON object");
    }
    // Checked once for every field of every request, keys included, whatever is stored later.
    if (auto at = NulAt(v, "")) {
      return JsonError(400, "invalid",
                       "must not contain the character U+0000 (in a key or a string)", *at);
    }
    // The parser cuts a key at a U+0000 ("k\u0000x" reads as "k"), so the text is looked at too.
    if (HasNulCharacter(body)) {
      return JsonError(400, "invalid",
                       "a key must not contain the character U+0000 (written \\u0000)", "body");
    }
    return v.extract<Object::Ptr>();
  } catch (const Poco::Exception& e) {
    return JsonError(400, "invalid_json", "the request body is not valid JSON: " + e.message());
  }
}

std::optional<FieldError> CheckKeys(const Object& o, const std::set<std::string>& allowed,
                                    const std::string& prefix) {
  for (const auto& [key, value] : o) {
    if (!allowed.count(key)) {
      std::string list;
      for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return FieldError{prefix + key, "unknown field (expected: " + list + ")"};
    }
  }
  return std::nullopt;
}

std::optional<FieldError> GetString(const Object& o, const std::string& key,
                                    const std::string& field, std::string* out) {
  if (!o.has(key)) return std::nullopt;
  const Poco::Dynamic::Var& v = o.get(key);
  if (!v.isString()) return FieldError{field, "must be a string"};
  *out = v.extract<std::string>();
  return std::nullopt;
}

std::optional<FieldError> GetBool(const Object& o, const std::string& key, bool* out) {
  if (!o.has(key)) return std::nullopt;
  const Poco::Dynamic::Var& v = o.get(key);
  if (v.type() != typeid(bool)) return FieldError{key, "must be true or false"};
  *out = v.extract<bool>();
  return std::nullopt;
}

// The optional client gid.
std::optional<FieldError> GetGid(const Object& o, std::optional<std::string>* out) {
  if (!o.has("gid")) return std::nullopt;
  std::string gid;
  if (auto e = GetString(o, "gid", "gid", &gid)) return e;
  if (!core::ValidId(gid, core::kMaxGidLength)) {
    return FieldError{"gid", "must be 1 to " + std::to_string(core::kMaxGidLength) +
                                 " characters of A-Z a-z 0-9 . _ : -"};
  }
  *out = gid;
  return std::nullopt;
}

std::optional<FieldError> GetDuration(const Object& o, const std::string& key,
                                      const std::string& field, std::optional<Duration>* out) {
  std::string text;
  if (!o.has(key)) return std::nullopt;
  if (auto e = GetString(o, key, field, &text)) return e;
  auto d = ParseDuration(text);
  if (!d || d->count() <= 0) {
    return FieldError{field, "\"" + text + "\" is not a positive duration (write e.g. 500ms, 10s)"};
  }
  if (*d > std::chrono::hours(24)) return FieldError{field, "must not exceed 24h"};
  *out = *d;
  return std::nullopt;
}

// An http(s) URL with a host, which participants.allow admits (when an allowlist is given).
std::optional<FieldError> CheckUrl(const std::string& url, const std::string& field,
                                   const UrlAllowlist* allow) {
  try {
    Poco::URI uri(url);
    if (uri.getScheme() != "http" && uri.getScheme() != "https") {
      return FieldError{field, "must be an http:// or https:// URL"};
    }
    if (uri.getHost().empty()) return FieldError{field, "URL has no host"};
  } catch (const Poco::Exception& e) {
    return FieldError{field, "not a valid URL: " + e.message()};
  }
  if (allow != nullptr && !allow->Allows(url)) {
    std::string entries;
    for (const std::string& e : allow->entries()) entries += (entries.empty() ? "" : ", ") + e;
    return FieldError{field,
                      url + " is not an allowed participant (participants.allow: " + entries + ")"};
  }
  return std::nullopt;
}

// A branch of `mode`'s shape: its ops (BranchOps) each allowed, those that must be given
// (RequiredOps(registered)) required, and "after" where the mode orders branches.
std::optional<FieldError> ParseBranch(const Object& o, const std::string& prefix,
                                      const core::Processor& mode, bool registered,
                                      const BranchLimits& limits, core::BranchSpec* out) {
  const std::vector<std::string>& ops = mode.BranchOps();
  const std::vector<std::string>& required = mode.RequiredOps(registered);
  std::set<std::string> allowed = {"id", "payload", "timeout", "after"};
  allowed.insert(ops.begin(), ops.end());
  // The op policies: "retry" (the first op's), and a later op's own settings, e.g.
  // "compensate_timeout", "compensate_retry", "compensate_payload".
  std::set<std::string> policies = {"retry"};
  for (size_t i = 1; i < ops.size(); ++i) {
    for (const char* suffix : {"_timeout", "_retry", "_payload"}) policies.insert(ops[i] + suffix);
  }
  for (const std::string& key : policies) {
    if (o.has(key) && !mode.TakesOpPolicies()) {
      return FieldError{prefix + key, "applies to saga steps only"};
    }
  }
  if (mode.TakesOpPolicies()) allowed.insert(policies.begin(), policies.end());
  if (auto e = CheckKeys(o, allowed, prefix)) return e;
  if (o.has("after") && !mode.OrdersBranches()) {
    return FieldError{prefix + "after", "applies to sagas only"};
  }
  if (!o.has("id")) return FieldError{prefix + "id", "is required"};
  if (auto e = GetString(o, "id", prefix + "id", &out->id)) return e;
  if (!core::ValidId(out->id, core::kMaxBranchIdLength)) {
    return FieldError{prefix + "id", "must be 1 to " + std::to_string(core::kMaxBranchIdLength) +
                                         " characters of A-Z a-z 0-9 . _ : -"};
  }
  for (const std::string& op : ops) {
    bool needed = std::find(required.begin(), required.end(), op) != required.end();
    if (!o.has(op)) {
      if (!needed) continue;
      return FieldError{prefix + op, "is required (the branch's " + op + " URL)"};
    }
    std::string url;
    if (auto e = GetString(o, op, prefix + op, &url)) return e;
    if (auto e = CheckUrl(url, prefix + op, limits.allow)) return e;
    out->urls[op] = url;
  }
  if (o.has("payload")) out->payload_json = Stringify(o.get("payload"));
  if (HasNulCharacter(out->payload_json)) {
    return FieldError{prefix + "payload", "must not contain the character U+0000"};
  }
  if (out->payload_json.size() > limits.max_payload_bytes) {
    return FieldError{prefix + "payload",
                      "is " + std::to_string(out->payload_json.size()) + " bytes; at most " +
                          std::to_string(limits.max_payload_bytes) + " (limits.max_payload_bytes)"};
  }
  if (o.has("after")) {
    const Poco::Dynamic::Var& v = o.get("after");
    if (v.type() != typeid(Array::Ptr))
      return FieldError{prefix + "after", "must be a list of step ids"};
    Array::Ptr list = v.extract<Array::Ptr>();
    for (size_t i = 0; i < list->size(); ++i) {
      if (!list->get(i).isString()) {
        return FieldError{prefix + "after", "must be a list of step ids"};
      }
      out->after.push_back(list->getElement<std::string>(i));
    }
  }
  if (auto e = GetDuration(o, "timeout", prefix + "timeout", &out->timeout)) return e;
  if (o.has("retry")) {
    core::OpRetry retry;
    if (auto e = ParseRetry(o.get("retry"), prefix + "retry", &retry)) return e;
    out->retry = retry;
  }
  for (size_t i = 1; i < ops.size(); ++i) {
    const std::string& op = ops[i];
    core::OpSettings settings;
    if (auto e = GetDuration(o, op + "_timeout", prefix + op + "_timeout", &settings.timeout)) {
      return e;
    }
    if (o.has(op + "_retry")) {
      core::OpRetry retry;
      if (auto e = ParseRetry(o.get(op + "_retry"), prefix + op + "_retry", &retry)) return e;
      settings.retry = retry;
    }
    if (o.has(op + "_payload")) {
      settings.payload_json = Stringify(o.get(op + "_payload"));
      if (settings.payload_json->size() > limits.max_payload_bytes) {
        return FieldError{prefix + op + "_payload",
                          "is " + std::to_string(settings.payload_json->size()) +
                              " bytes; at most " + std::to_string(limits.max_payload_bytes) +
                              " (limits.max_payload_bytes)"};
      }
    }
    if (!settings.timeout && !settings.retry && !settings.payload_json) continue;
    if (!out->urls.count(op)) {
      return FieldError{prefix + op + "_" +
                            (settings.timeout ? "timeout"
                             : settings.retry ? "retry"
                                              : "payload"),
                        "applies to a branch with a " + op + " URL"};
    }
    out->op_settings[op] = std::move(settings);
  }
  return std::nullopt;
}

std::optional<FieldError> ParseRetry(const Poco::Dynamic::Var& v, const std::string& field,
                                     core::OpRetry* out) {
  if (v.type() != typeid(Object::Ptr)) {
    return FieldError{field, "must be an object of attempts, backoff, max_backoff"};
  }
  const Object& o = *v.extract<Object::Ptr>();
  if (auto e = CheckKeys(o, {"attempts", "backoff", "max_backoff"}, field + ".")) return e;
  if (o.has("attempts")) {
    const Poco::Dynamic::Var& a = o.get("attempts");
    if (!a.isInteger() || a.convert<int64_t>() < 1 || a.convert<int64_t>() > 1000) {
      return FieldError{field + ".attempts", "must be a whole number from 1 to 1000"};
    }
    out->attempts = a.convert<int>();
  }
  if (auto e = GetDuration(o, "backoff", field + ".backoff", &out->backoff)) return e;
  if (auto e = GetDuration(o, "max_backoff", field + ".max_backoff", &out->max_backoff)) return e;
  if (out->backoff && out->max_backoff && *out->max_backoff < *out->backoff) {
    return FieldError{field + ".max_backoff", "must not be below backoff"};
  }
  return std::nullopt;
}

// The "messages" list of a begin request: each {topic, key, payload, headers}.
std::optional<FieldError> ParseMessages(const Object& body, size_t max_payload_bytes,
                                        std::vector<core::MessageSpec>* out) {
  if (body.get("messages").type() != typeid(Array::Ptr)) {
    return FieldError{"messages", "must be a list"};
  }
  Array::Ptr list = body.getArray("messages");
  for (size_t i = 0; i < list->size(); ++i) {
    std::string prefix = "messages[" + std::to_string(i) + "]";
    if (!list->isObject(i)) return FieldError{prefix, "must be an object"};
    Object::Ptr m = list->getObject(i);
    if (auto e = CheckKeys(*m, {"topic", "key", "payload", "headers"}, prefix + ".")) return e;
    core::MessageSpec spec;
    if (!m->has("topic")) return FieldError{prefix + ".topic", "is required"};
    if (auto e = GetString(*m, "topic", prefix + ".topic", &spec.topic)) return e;
    if (spec.topic.empty() || spec.topic.size() > 249) {
      return FieldError{prefix + ".topic", "must be 1 to 249 characters"};
    }
    if (auto e = GetString(*m, "key", prefix + ".key", &spec.key)) return e;
    if (!m->has("payload")) return FieldError{prefix + ".payload", "is required"};
    spec.value_json = Stringify(m->get("payload"));
    if (HasNulCharacter(spec.value_json)) {
      return FieldError{prefix + ".payload", "must not contain the character U+0000"};
    }
    if (spec.value_json.size() > max_payload_bytes) {
      return FieldError{prefix + ".payload",
                        "is " + std::to_string(spec.value_json.size()) + " bytes; at most " +
                            std::to_string(max_payload_bytes) + " (limits.max_payload_bytes)"};
    }
    if (m->has("headers")) {
      if (m->get("headers").type() != typeid(Object::Ptr)) {
        return FieldError{prefix + ".headers", "must be an object of strings"};
      }
      for (const auto& [k, v] : *m->getObject("headers")) {
        if (!v.isString()) return FieldError{prefix + ".headers." + k, "must be a string"};
        spec.headers[k] = v.extract<std::string>();
      }
    }
    out->push_back(std::move(spec));
  }
  return std::nullopt;
}

std::string Sha1Hex(const std::string& text) {
  Poco::SHA1Engine sha1;
  sha1.update(text);
  return Poco::DigestEngine::digestToHex(sha1.digest());
}

std::optional<core::TimePoint> ParseSince(const std::string& text, core::TimePoint now) {
  if (auto d = ParseDuration(text)) return now - *d;
  // Poco's parser is lenient (it reads "yesterday" as a time): check the shape first.
  static const std::regex kIso(
      R"(\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?)");
  if (!std::regex_match(text, kIso)) return std::nullopt;
  Poco::DateTime t;
  int tz = 0;
  if (!Poco::DateTimeParser::tryParse(Poco::DateTimeFormat::ISO8601_FRAC_FORMAT, text, t, tz) &&
      !Poco::DateTimeParser::tryParse(Poco::DateTimeFormat::ISO8601_FORMAT, text, t, tz)) {
    return std::nullopt;
  }
  return core::TimePoint(std::chrono::microseconds(t.timestamp().epochMicroseconds() -
                                                   static_cast<int64_t>(tz) * 1000000));
}

std::optional<FieldError> CheckNotify(const Poco::JSON::Object& o, const UrlAllowlist* allow) {
  if (!o.has("notify")) return std::nullopt;
  Poco::Dynamic::Var v = o.get("notify");
  if (v.type() != typeid(Poco::JSON::Object::Ptr)) {
    return FieldError{"notify", "must be an object: {\"url\": ..., \"events\": [...]}"};
  }
  const Poco::JSON::Object& notify = *v.extract<Poco::JSON::Object::Ptr>();
  if (auto e = CheckKeys(notify, {"url", "events"}, "notify.")) return e;
  std::string url;
  if (!notify.has("url")) return FieldError{"notify.url", "is required"};
  if (auto e = GetString(notify, "url", "notify.url", &url)) return e;
  if (auto e = CheckUrl(url, "notify.url", allow)) return e;
  if (notify.has("events")) {
    Poco::Dynamic::Var events = notify.get("events");
    if (events.type() != typeid(Poco::JSON::Array::Ptr)) {
      return FieldError{"notify.events", "must be a list of committed, aborted, attention"};
    }
    auto list = events.extract<Poco::JSON::Array::Ptr>();
    if (list->size() == 0) return FieldError{"notify.events", "must not be empty"};
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string field = "notify.events[" + std::to_string(i) + "]";
      Poco::Dynamic::Var e = list->get(i);
      if (!e.isString()) return FieldError{field, "must be committed, aborted or attention"};
      const std::string name = e.toString();
      if (name != "committed" && name != "aborted" && name != "attention") {
        return FieldError{field, "\"" + name + "\" is not committed, aborted or attention"};
      }
    }
  }
  return std::nullopt;
}

}  // namespace treaty::api
