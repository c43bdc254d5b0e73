// The saga endpoints of TransactionsApi: start a loaded definition by name, list, show one,
// reload.

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>

#include "coordinator/api/api_responses.h"
#include "coordinator/api/request_parsing.h"
#include "coordinator/api/transactions_api.h"

namespace treaty::api {

using http::JsonError;
using Poco::JSON::Array;
using Poco::JSON::Object;

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
  return BeginAndAnswer(std::move(req), Stringify(Object::Ptr(new Object(canonical))), wait);
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

// One loaded definition with its steps as written: what each calls, and what it runs after
// (the console draws it as a graph).
ApiResponse TransactionsApi::GetSaga(const ApiRequest& r) {
  const std::string& name = r.path_params.at("name");
  auto def = sagas_ ? sagas_->Find(name) : nullptr;
  if (!def) return JsonError(404, "not_found", "no saga named " + name + " is loaded");
  Object::Ptr o = NewObject();
  o->set("name", def->name);
  o->set("version", def->version);
  o->set("file", def->file);
  Array::Ptr steps = new Array();
  for (const saga::SagaStep& st : def->steps) {
    Object::Ptr s = NewObject();
    s->set("name", st.name);
    s->set("action", st.action);
    if (!st.compensate.empty()) s->set("compensate", st.compensate);
    Array::Ptr after = new Array();
    for (const std::string& a : st.after) after->add(a);
    s->set("after", after);
    if (st.timeout) s->set("timeout_ms", static_cast<int64_t>(st.timeout->count()));
    steps->add(s);
  }
  o->set("steps", steps);
  return Json(200, o);
}

ApiResponse TransactionsApi::ReloadSagas(const ApiRequest& r) {
  if (!sagas_) return JsonError(404, "not_found", "no saga definitions are configured");
  Status s = sagas_->Reload();
  if (!s.ok()) {
    return JsonError(400, "invalid",
                     "definitions not reloaded; the loaded ones stay: " + s.message());
  }
  return ListSagas(r);
}

}  // namespace treaty::api
