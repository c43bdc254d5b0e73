#include "coordinator/api/transactions_api.h"

#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeFormatter.h>
#include <Poco/DateTimeParser.h>
#include <Poco/DigestEngine.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>
#include <Poco/SHA1Engine.h>
#include <Poco/Timestamp.h>
#include <Poco/URI.h>

#include <algorithm>
#include <atomic>
#include <regex>
#include <set>
#include <sstream>
#include <variant>

#include "common/log.h"
#include "coordinator/core/transaction.h"

namespace treaty::api {
namespace {

using http::JsonError;

using Poco::JSON::Array;
using Poco::JSON::Object;

// A validation failure: the field it concerns and what is wrong.
struct FieldError {
  std::string field;
  std::string message;
};

ApiResponse BadField(const FieldError& e) { return JsonError(400, "invalid", e.message, e.field); }

const Logger kLog("api");

// An answer for a failure that is not the client's: its cause (often the store's own words,
// with addresses and SQL in them) goes to the log under a request id, and only the id to the
// client.
ApiResponse ServerFault(int status, const char* code, const char* what, const Status& s) {
  static std::atomic<uint64_t> next{0};
  const std::string id = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count()) +
                         "-" + std::to_string(next.fetch_add(1));
  kLog.Warn("request failed", {{"request_id", id}, {"error", s.ToString()}});
  return JsonError(status, code, std::string(what) + " (request " + id + ", see the log)");
}

ApiResponse FromStatus(const Status& s) {
  switch (s.code()) {
    case Status::Code::kInvalidArgument:
      return JsonError(400, "invalid", s.message(), s.field());
    case Status::Code::kNotFound:
      return JsonError(404, "not_found", s.message());
    case Status::Code::kConflict:
    case Status::Code::kLeaseLost:  // another coordinator took it over meanwhile
      return JsonError(409, "conflict", s.message());
    case Status::Code::kUnavailable:
      return ServerFault(503, "unavailable", "a dependency cannot be reached now; retry later", s);
    case Status::Code::kResourceExhausted: {
      ApiResponse r = JsonError(503, "overloaded", s.message());
      r.headers.emplace_back("Retry-After", "1");
      return r;
    }
    default:
      return ServerFault(500, "internal", "internal error", s);
  }
}

// Whether JSON text (as Stringify writes it) has a string with the character U+0000, which
// PostgreSQL cannot store: an escape \u0000 preceded by an even number of backslashes.
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

ApiResponse Json(int status, const Object::Ptr& obj) {
  return ApiResponse{status, "application/json", Stringify(obj)};
}

std::string Iso(core::TimePoint t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  return Poco::DateTimeFormatter::format(Poco::Timestamp(us), "%Y-%m-%dT%H:%M:%S.%iZ");
}

Object::Ptr NewObject() { return new Object(Poco::JSON_PRESERVE_KEY_ORDER); }

Object::Ptr Summary(const core::Transaction& tx) {
  Object::Ptr o = NewObject();
  o->set("gid", tx.gid);
  o->set("mode", std::string(core::ModeName(tx.mode)));
  o->set("status", std::string(core::StatusName(tx.status)));
  if (!tx.reason.empty()) o->set("reason", tx.reason);
  if (!tx.attention.empty()) o->set("attention", tx.attention);
  o->set("created_at", Iso(tx.created_at));
  o->set("updated_at", Iso(tx.updated_at));
  o->set("deadline", Iso(tx.deadline));
  return o;
}

Object::Ptr Details(const core::Transaction& tx) {
  Object::Ptr o = Summary(tx);
  o->set("submitted", tx.submitted);
  if (!tx.definition.empty()) o->set("definition", tx.definition);
  Array::Ptr branches = new Array();
  for (const core::BranchOp& op : tx.ops) {
    Object::Ptr b = NewObject();
    b->set("id", op.branch_id);
    b->set("op", op.op);
    if (op.topic.empty()) {
      b->set("url", op.url);
    } else {
      b->set("topic", op.topic);  // a message: delivered to Kafka, no URL
    }
    b->set("status", std::string(core::OpStatusName(op.status)));
    b->set("attempts", op.attempts);
    if (!op.after.empty()) {
      Array::Ptr after = new Array();
      for (const std::string& a : op.after) after->add(a);
      b->set("after", after);
    }
    if (!op.last_error.empty()) b->set("last_error", op.last_error);
    branches->add(b);
  }
  o->set("branches", branches);
  Array::Ptr log = new Array();
  for (const core::LogEntry& e : tx.log) {
    Object::Ptr l = NewObject();
    l->set("at", Iso(e.at));
    l->set("from", e.from ? Poco::Dynamic::Var(std::string(core::StatusName(*e.from)))
                          : Poco::Dynamic::Var());
    l->set("to", std::string(core::StatusName(e.to)));
    l->set("reason", e.reason);
    log->add(l);
  }
  o->set("log", log);
  return o;
}

// The short answer to a request that changed a transaction.
Object::Ptr Outcome(const core::Transaction& tx) {
  Object::Ptr o = NewObject();
  o->set("gid", tx.gid);
  o->set("status", std::string(core::StatusName(tx.status)));
  if (!tx.reason.empty()) o->set("reason", tx.reason);
  if (!tx.attention.empty()) o->set("attention", tx.attention);
  return o;
}

// Parses a JSON object body; an empty body is an empty object when `empty_ok`.
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
    return FieldError{field, url + " is not an allowed participant (participants.allow: " +
                                 entries + ")"};
  }
  return std::nullopt;
}

// What every branch is checked against besides its shape.
struct BranchLimits {
  const UrlAllowlist* allow = nullptr;
  size_t max_payload_bytes = 0;
};

// A branch of `mode`'s shape: its ops (BranchOps) each allowed, those that must be given
// (RequiredOps(registered)) required, and "after" where the mode orders branches.
std::optional<FieldError> ParseBranch(const Object& o, const std::string& prefix,
                                      const core::Processor& mode, bool registered,
                                      const BranchLimits& limits, core::BranchSpec* out) {
  const std::vector<std::string>& ops = mode.BranchOps();
  const std::vector<std::string>& required = mode.RequiredOps(registered);
  std::set<std::string> allowed = {"id", "payload", "timeout", "after"};
  allowed.insert(ops.begin(), ops.end());
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
    return FieldError{prefix + "payload", "is " + std::to_string(out->payload_json.size()) +
                                              " bytes; at most " +
                                              std::to_string(limits.max_payload_bytes) +
                                              " (limits.max_payload_bytes)"};
  }
  if (o.has("after")) {
    const Poco::Dynamic::Var& v = o.get("after");
    if (v.type() != typeid(Array::Ptr)) return FieldError{prefix + "after", "must be a list of step ids"};
    Array::Ptr list = v.extract<Array::Ptr>();
    for (size_t i = 0; i < list->size(); ++i) {
      if (!list->get(i).isString()) {
        return FieldError{prefix + "after", "must be a list of step ids"};
      }
      out->after.push_back(list->getElement<std::string>(i));
    }
  }
  if (auto e = GetDuration(o, "timeout", prefix + "timeout", &out->timeout)) return e;
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

}  // namespace

TransactionsApi::TransactionsApi(core::TransactionService& service,
                                 core::ProcessorRegistry processors, saga::SagaRegistry* sagas,
                                 TransactionsApiOptions options)
    : service_(service),
      processors_(std::move(processors)),
      sagas_(sagas),
      options_(std::move(options)) {}

namespace {
BranchLimits MakeLimits(const TransactionsApiOptions& o) {
  return BranchLimits{o.allowlist.get(), o.max_payload_bytes};
}
}  // namespace

void TransactionsApi::Register(Router& router) {
  using Method = ApiResponse (TransactionsApi::*)(const ApiRequest&);
  auto add = [&](const char* verb, const char* pattern, Method m, http::Access access) {
    router.Add(
        verb, pattern,
        [this, m](const ApiRequest& r) {
          if (!options_.ready()) {
            return JsonError(503, "unavailable", "treatyd is starting: the store is not ready yet");
          }
          // An id from the path is checked like one from a body, before anything looks it up.
          if (auto it = r.path_params.find("gid");
              it != r.path_params.end() && !core::ValidId(it->second, core::kMaxGidLength)) {
            return BadField({"gid", "must be 1 to " + std::to_string(core::kMaxGidLength) +
                                        " characters of A-Z a-z 0-9 . _ : -"});
          }
          return (this->*m)(r);
        },
        access);
  };
  // Clients run transactions and read them; operators also retry and reload.
  using http::Access;
  add("POST", "/v1/transactions", &TransactionsApi::Begin, Access::kClient);
  add("GET", "/v1/transactions", &TransactionsApi::List, Access::kClient);
  add("GET", "/v1/transactions/{gid}", &TransactionsApi::Get, Access::kClient);
  add("POST", "/v1/transactions/{gid}/branches", &TransactionsApi::AddBranch, Access::kClient);
  add("POST", "/v1/transactions/{gid}/submit", &TransactionsApi::Submit, Access::kClient);
  add("POST", "/v1/transactions/{gid}/abort", &TransactionsApi::Abort, Access::kClient);
  add("POST", "/v1/transactions/{gid}/retry", &TransactionsApi::Retry, Access::kAdmin);
  add("GET", "/v1/stats", &TransactionsApi::Stats, Access::kClient);
  add("GET", "/v1/sagas", &TransactionsApi::ListSagas, Access::kClient);
  add("POST", "/v1/sagas/reload", &TransactionsApi::ReloadSagas, Access::kAdmin);
  add("POST", "/v1/sagas/{name}", &TransactionsApi::StartSaga, Access::kClient);
}

ApiResponse TransactionsApi::Answer(const core::BeginOutcome& begun, bool wait,
                                    core::TimePoint received) {
  if (!wait) return Json(201, Outcome(begun.tx));
  // From when the request came: Begin may have driven the transaction already.
  core::TimePoint until = std::min(begun.tx.deadline, received + options_.max_wait);
  auto done = service_.WaitFinal(begun, until);
  if (!done.ok()) return FromStatus(done.status());
  return Json(200, Outcome(*done));
}

ApiResponse TransactionsApi::StartSaga(const ApiRequest& r) {
  const std::string& name = r.path_params.at("name");
  auto def = sagas_ ? sagas_->Find(name) : nullptr;
  if (!def) return JsonError(404, "not_found", "no saga named " + name + " is loaded");
  auto parsed = ParseObject(r.body, true);
  if (auto* err = std::get_if<ApiResponse>(&parsed)) return *err;
  Object::Ptr body = std::get<Object::Ptr>(parsed);
  if (auto e = CheckKeys(*body, {"gid", "input", "wait", "timeout"}, "")) return BadField(*e);
  std::optional<std::string> gid;
  if (auto e = GetGid(*body, &gid)) return BadField(*e);
  bool wait = false;
  if (auto e = GetBool(*body, "wait", &wait)) return BadField(*e);
  std::optional<Duration> timeout;
  if (auto e = GetDuration(*body, "timeout", "timeout", &timeout)) return BadField(*e);
  Object::Ptr input = new Object();
  if (body->has("input")) {
    if (body->get("input").type() != typeid(Object::Ptr)) {
      return BadField({"input", "must be a JSON object"});
    }
    input = body->getObject("input");
  }
  if (def->steps.size() > options_.max_branches) {  // before any step is rendered
    return BadField({"steps", "the saga has " + std::to_string(def->steps.size()) +
                                  " steps; at most " + std::to_string(options_.max_branches) +
                                  " (limits.max_branches)"});
  }
  auto started = saga::StartRequest(*def, input);
  if (!started.ok()) {
    const std::string& m = started.status().message();
    return BadField({m.substr(0, m.find(' ')), m});
  }
  core::BeginRequest req = std::move(*started);
  req.gid = std::move(gid);
  req.timeout = timeout;
  // The definition's URLs are the operator's, but filled from the input and the environment:
  // they pass the same allowlist as a client's, and its payloads the same limits.
  for (const core::BranchSpec& b : *req.branches) {
    for (const auto& [op, url] : b.urls) {
      if (auto e = CheckUrl(url, "steps." + b.id + "." + op, options_.allowlist.get())) {
        return BadField(*e);
      }
    }
    if (b.payload_json.size() > options_.max_payload_bytes) {
      return BadField({"steps." + b.id + ".payload",
                       "is " + std::to_string(b.payload_json.size()) + " bytes; at most " +
                           std::to_string(options_.max_payload_bytes) +
                           " (limits.max_payload_bytes)"});
    }
    if (HasNulCharacter(b.payload_json)) {
      return BadField({"steps." + b.id + ".payload", "must not contain the character U+0000"});
    }
  }
  Object canonical(*body);
  canonical.remove("wait");
  canonical.set("saga", name);
  req.request_json = Stringify(Object::Ptr(new Object(canonical)));
  req.request_digest = Sha1Hex(req.request_json);
  req.wait = wait;
  const core::TimePoint received = std::chrono::system_clock::now();
  auto begun = service_.Begin(req);
  if (!begun.ok()) return FromStatus(begun.status());
  return Answer(*begun, wait, received);
}

ApiResponse TransactionsApi::ListSagas(const ApiRequest&) {
  Array::Ptr list = new Array();
  if (sagas_) {
    for (const auto& d : sagas_->List()) {
      Object::Ptr o = NewObject();
      o->set("name", d->name);
      o->set("version", d->version);
      o->set("file", d->file);
      Array::Ptr steps = new Array();
      for (const saga::SagaStep& st : d->steps) steps->add(st.name);
      o->set("steps", steps);
      list->add(o);
    }
  }
  Object::Ptr o = NewObject();
  o->set("sagas", list);
  return Json(200, o);
}

ApiResponse TransactionsApi::ReloadSagas(const ApiRequest& r) {
  if (!sagas_) return JsonError(404, "not_found", "no saga definitions are configured");
  Status s = sagas_->Reload();
  if (!s.ok()) {
    return JsonError(400, "invalid", "definitions not reloaded; the loaded ones stay: " + s.message());
  }
  return ListSagas(r);
}

ApiResponse TransactionsApi::Begin(const ApiRequest& r) {
  auto parsed = ParseObject(r.body, false);
  if (auto* err = std::get_if<ApiResponse>(&parsed)) return *err;
  Object::Ptr body = std::get<Object::Ptr>(parsed);

  // The fields of every mode, then those some modes read: each refused, naming the modes that
  // read it, when this one does not (the processor would refuse it too, less helpfully).
  const std::vector<std::string> mode_fields = processors_.RequestFields();
  std::set<std::string> allowed = {"gid", "mode", "wait", "timeout", "branches"};
  allowed.insert(mode_fields.begin(), mode_fields.end());
  if (auto e = CheckKeys(*body, allowed, "")) return BadField(*e);
  core::BeginRequest req;
  std::string mode_name;
  if (!body->has("mode")) {
    return BadField({"mode", "is required (" + processors_.ModeNames() + ")"});
  }
  if (auto e = GetString(*body, "mode", "mode", &mode_name)) return BadField(*e);
  auto mode = core::ParseMode(mode_name);
  if (!mode) {
    return BadField({"mode", "\"" + mode_name + "\" is not one of " + processors_.ModeNames()});
  }
  const core::Processor* processor = processors_.Find(*mode);
  if (processor == nullptr) return BadField({"mode", "mode " + mode_name + " is not served yet"});
  req.mode = *mode;
  const std::vector<std::string>& reads = processor->RequestFields();
  for (const std::string& field : mode_fields) {
    if (body->has(field) && std::find(reads.begin(), reads.end(), field) == reads.end()) {
      return BadField({field, "applies to mode " + processors_.ModesReading(field) + " only"});
    }
  }
  if (auto e = GetGid(*body, &req.gid)) return BadField(*e);
  bool wait = false;
  if (auto e = GetBool(*body, "wait", &wait)) return BadField(*e);
  if (auto e = GetDuration(*body, "timeout", "timeout", &req.timeout)) return BadField(*e);
  if (body->has("sequential")) {
    bool sequential = false;
    if (auto e = GetBool(*body, "sequential", &sequential)) return BadField(*e);
    req.sequential = sequential;
  }
  if (body->has("query")) {
    std::string query;
    if (auto e = GetString(*body, "query", "query", &query)) return BadField(*e);
    if (auto e = CheckUrl(query, "query", options_.allowlist.get())) return BadField(*e);
    req.query_url = std::move(query);
  }
  if (auto e = GetDuration(*body, "check_back", "check_back", &req.check_back)) return BadField(*e);
  if (body->has("messages")) {
    std::vector<core::MessageSpec> messages;
    if (auto e = ParseMessages(*body, options_.max_payload_bytes, &messages)) return BadField(*e);
    req.messages = std::move(messages);
  }
  if (body->has("branches")) {
    Poco::Dynamic::Var v = body->get("branches");
    if (v.type() != typeid(Array::Ptr)) return BadField({"branches", "must be a list"});
    Array::Ptr list = v.extract<Array::Ptr>();
    if (list->size() == 0) return BadField({"branches", "must not be empty"});
    if (list->size() > options_.max_branches) {
      return BadField({"branches", "at most " + std::to_string(options_.max_branches) +
                                       " branches per transaction"});
    }
    std::vector<core::BranchSpec> branches;
    std::set<std::string> ids;
    for (size_t i = 0; i < list->size(); ++i) {
      std::string prefix = "branches[" + std::to_string(i) + "].";
      if (!list->isObject(i)) return BadField({prefix.substr(0, prefix.size() - 1), "must be an object"});
      core::BranchSpec b;
      if (auto e = ParseBranch(*list->getObject(i), prefix, *processor, /*registered=*/false,
                               MakeLimits(options_), &b)) {
        return BadField(*e);
      }
      if (!ids.insert(b.id).second) {
        return BadField({prefix + "id", "\"" + b.id + "\" is used by another branch"});
      }
      branches.push_back(std::move(b));
    }
    req.branches = std::move(branches);
  }
  // The request without "wait" identifies it: the same body again is the same transaction.
  Object canonical(*body);
  canonical.remove("wait");
  req.request_json = Stringify(Object::Ptr(new Object(canonical)));
  req.request_digest = Sha1Hex(req.request_json);

  req.wait = wait;
  const core::TimePoint received = std::chrono::system_clock::now();
  auto begun = service_.Begin(req);
  if (!begun.ok()) return FromStatus(begun.status());
  return Answer(*begun, wait, received);
}

ApiResponse TransactionsApi::AddBranch(const ApiRequest& r) {
  const std::string& gid = r.path_params.at("gid");
  auto parsed = ParseObject(r.body, false);
  if (auto* err = std::get_if<ApiResponse>(&parsed)) return *err;
  auto tx = service_.Get(gid);
  if (!tx.ok()) return FromStatus(tx.status());
  const core::Processor* processor = processors_.Find(tx->mode);
  if (processor == nullptr) return JsonError(409, "conflict", "mode not served");
  core::BranchSpec b;
  if (auto e = ParseBranch(*std::get<Object::Ptr>(parsed), "", *processor, /*registered=*/true,
                           MakeLimits(options_), &b)) {
    return BadField(*e);
  }
  if (tx->BranchIds().size() >= options_.max_branches) {
    return JsonError(409, "conflict",
                     "at most " + std::to_string(options_.max_branches) + " branches per transaction");
  }
  Status s = service_.AddBranch(gid, b);
  if (!s.ok()) return FromStatus(s);
  Object::Ptr o = NewObject();
  o->set("gid", gid);
  o->set("branch_id", b.id);
  return Json(201, o);
}

ApiResponse TransactionsApi::ChangeAndAnswer(
    const ApiRequest& r,
    const std::function<Result<core::Transaction>(const std::string&, bool, bool)>& change,
    bool until_deadline, bool takes_rolled_back) {
  auto parsed = ParseObject(r.body, true);
  if (auto* err = std::get_if<ApiResponse>(&parsed)) return *err;
  Object::Ptr body = std::get<Object::Ptr>(parsed);
  if (auto e = takes_rolled_back ? CheckKeys(*body, {"wait", "rolled_back"}, "")
                                 : CheckKeys(*body, {"wait"}, "")) {
    return BadField(*e);
  }
  bool wait = false;
  if (auto e = GetBool(*body, "wait", &wait)) return BadField(*e);
  bool rolled_back = false;
  if (auto e = GetBool(*body, "rolled_back", &rolled_back)) return BadField(*e);
  const core::TimePoint received = std::chrono::system_clock::now();
  auto tx = change(r.path_params.at("gid"), wait, rolled_back);
  if (!tx.ok()) return FromStatus(tx.status());
  if (!wait) return Json(202, Outcome(*tx));
  if (core::IsFinal(tx->status)) return Json(200, Outcome(*tx));  // driven to its end already
  core::TimePoint until = received + options_.max_wait;  // the change may have driven it
  if (until_deadline) until = std::min(until, tx->deadline);
  auto done = service_.WaitFinal(tx->gid, until);
  if (!done.ok()) return FromStatus(done.status());
  return Json(200, Outcome(*done));
}

ApiResponse TransactionsApi::Submit(const ApiRequest& r) {
  return ChangeAndAnswer(
      r, [this](const std::string& gid, bool wait, bool) { return service_.Submit(gid, wait); },
      /*until_deadline=*/true, /*takes_rolled_back=*/false);
}

ApiResponse TransactionsApi::Abort(const ApiRequest& r) {
  // Aborting ends quickly whatever the deadline says: wait up to max_wait.
  return ChangeAndAnswer(
      r,
      [this](const std::string& gid, bool, bool rolled_back) {
        return service_.Abort(gid, rolled_back ? core::AbortBy::kService : core::AbortBy::kOther);
      },
      /*until_deadline=*/false, /*takes_rolled_back=*/true);
}

ApiResponse TransactionsApi::Retry(const ApiRequest& r) {
  auto tx = service_.RetryNow(r.path_params.at("gid"));
  if (!tx.ok()) return FromStatus(tx.status());
  return Json(202, Outcome(*tx));
}

ApiResponse TransactionsApi::Get(const ApiRequest& r) {
  auto tx = service_.Get(r.path_params.at("gid"));
  if (!tx.ok()) return FromStatus(tx.status());
  return Json(200, Details(*tx));
}

namespace {

// A point in time from a query parameter: an ISO 8601 time, or a duration meaning that long ago.
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

}  // namespace

ApiResponse TransactionsApi::List(const ApiRequest& r) {
  core::ListFilter f;
  const core::TimePoint now = std::chrono::system_clock::now();
  for (const auto& [key, value] : r.query) {
    if (key == "status") {
      f.status = core::ParseStatus(value);
      if (!f.status) return BadField({"status", "\"" + value + "\" is not a status"});
    } else if (key == "mode") {
      f.mode = core::ParseMode(value);
      if (!f.mode) return BadField({"mode", "\"" + value + "\" is not a mode"});
    } else if (key == "limit") {
      char* end = nullptr;
      long n = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || n < 1 || n > 1000) {
        return BadField({"limit", "must be a whole number from 1 to 1000"});
      }
      f.limit = static_cast<int>(n);
    } else if (key == "after") {
      if (!core::ValidId(value, core::kMaxGidLength)) {
        return BadField({"after", "must be a gid: 1 to " + std::to_string(core::kMaxGidLength) +
                                      " characters of A-Z a-z 0-9 . _ : -"});
      }
      f.after_gid = value;
    } else if (key == "since") {
      f.created_since = ParseSince(value, now);
      if (!f.created_since) {
        return BadField({"since", "must be a duration (\"15m\": that long ago) or an ISO 8601 time"});
      }
    } else if (key == "older_than") {
      auto d = ParseDuration(value);
      if (!d) return BadField({"older_than", "must be a duration such as 30s or 2h"});
      f.created_before = now - *d;
    } else if (key == "stuck") {
      if (value != "true" && value != "false") return BadField({"stuck", "must be true or false"});
      if (value == "true") f.stuck_at = now;
    } else {
      return BadField({key,
                       "unknown query parameter (expected: after, limit, mode, older_than, since, "
                       "status, stuck)"});
    }
  }
  auto page = service_.List(f);
  if (!page.ok()) return FromStatus(page.status());
  Object::Ptr o = NewObject();
  Array::Ptr list = new Array();
  for (const core::Transaction& tx : *page) list->add(Summary(tx));
  o->set("transactions", list);
  o->set("next", static_cast<int>(page->size()) == f.limit ? Poco::Dynamic::Var(page->back().gid)
                                                            : Poco::Dynamic::Var());
  return Json(200, o);
}

ApiResponse TransactionsApi::Stats(const ApiRequest&) {
  auto counts = service_.CountByStatus();
  if (!counts.ok()) return FromStatus(counts.status());
  Object::Ptr by_status = NewObject();
  int64_t total = 0;
  for (core::TxStatus st : {core::TxStatus::kActive, core::TxStatus::kPrepared,
                            core::TxStatus::kCommitting, core::TxStatus::kAborting,
                            core::TxStatus::kCommitted, core::TxStatus::kAborted}) {
    auto it = counts->find(st);
    int64_t n = it == counts->end() ? 0 : it->second;
    by_status->set(std::string(core::StatusName(st)), n);
    total += n;
  }
  Object::Ptr o = NewObject();
  o->set("by_status", by_status);
  o->set("total", total);
  return Json(200, o);
}

}  // namespace treaty::api
