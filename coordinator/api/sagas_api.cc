// The saga endpoints of TransactionsApi: start a definition by name (the loaded version) or by
// name@version (a kept one that transactions still run on), list, show one with its versions,
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

std::variant<std::shared_ptr<const saga::SagaDefinition>, ApiResponse> TransactionsApi::FindSaga(
    const std::string& name_at_version) {
  const size_t at = name_at_version.find('@');
  const std::string name = name_at_version.substr(0, at);
  auto loaded = sagas_ ? sagas_->Find(name) : nullptr;
  if (at == std::string::npos) {
    if (!loaded) return JsonError(404, "not_found", "no saga named " + name + " is loaded");
    return loaded;
  }
  const std::string version = name_at_version.substr(at + 1);
  if (loaded && loaded->version == version) return loaded;
  std::optional<saga::StoredSagaVersion> kept;
  if (options_.saga_versions != nullptr) {
    auto found = options_.saga_versions->FindSagaVersion(name, version);
    if (!found.ok()) return FromStatus(found.status());
    kept = std::move(*found);
  }
  const std::string loaded_note =
      loaded ? " (the loaded version is " + loaded->version + ")" : " (none is loaded)";
  if (!kept || kept->unfinished == 0) {
    return JsonError(404, "not_found",
                     "saga " + name + "@" + version +
                         " is not loaded and no unfinished transaction runs on it" + loaded_note);
  }
  // Its URLs' ${env...} as this treatyd's environment has them now.
  auto def = sagas_ ? sagas_->Parse(kept->text, kept->file) : Status::NotFound("no sagas");
  if (!def.ok()) {
    return JsonError(
        409, "conflict",
        "saga " + name + "@" + version + " no longer loads here: " + def.status().message());
  }
  return std::make_shared<const saga::SagaDefinition>(std::move(*def));
}

Status TransactionsApi::KeepVersion(const saga::SagaDefinition& def) {
  if (options_.saga_versions == nullptr) return Status::Ok();
  const std::string key = def.name + "@" + def.version;
  {
    MutexLock lock(kept_mu_);
    if (kept_versions_.count(key)) return Status::Ok();
  }
  Status s = options_.saga_versions->SaveSagaVersion(def.name, def.version, def.file, def.text);
  if (!s.ok()) return s;
  MutexLock lock(kept_mu_);
  kept_versions_.insert(key);
  return s;
}

ApiResponse TransactionsApi::StartSaga(const ApiRequest& r) {
  auto found = FindSaga(r.path_params.at("name"));
  if (auto* err = std::get_if<ApiResponse>(&found)) return *err;
  auto def = std::get<std::shared_ptr<const saga::SagaDefinition>>(found);
  const std::string name = def->name;
  auto parsed = ParseObject(r.body, true);
  if (auto* err = std::get_if<ApiResponse>(&parsed)) return *err;
  Object::Ptr body = std::get<Object::Ptr>(parsed);
  if (auto e = CheckKeys(*body, {"gid", "input", "wait", "timeout", "notify"}, "")) {
    return BadField(*e);
  }
  if (auto e = CheckNotify(*body, options_.allowlist.get())) return BadField(*e);
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
  // Kept before its first transaction: any coordinator can then start it by name@version
  // while that transaction runs.
  if (Status kept = KeepVersion(*def); !kept.ok()) return FromStatus(kept);
  Object canonical(*body);
  canonical.remove("wait");
  canonical.set("saga", r.path_params.at("name"));  // as asked: "name" or "name@version"
  CaptureCallContext(r, &req);
  return BeginAndAnswer(std::move(req), Stringify(Object::Ptr(new Object(canonical))), wait);
}

namespace {

Object::Ptr RetryObject(const core::OpRetry& r) {
  Object::Ptr o = NewObject();
  if (r.attempts > 0) o->set("attempts", r.attempts);
  if (r.backoff) o->set("backoff_ms", static_cast<int64_t>(r.backoff->count()));
  if (r.max_backoff) o->set("max_backoff_ms", static_cast<int64_t>(r.max_backoff->count()));
  return o;
}

}  // namespace

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
  auto found = FindSaga(r.path_params.at("name"));
  if (auto* err = std::get_if<ApiResponse>(&found)) return *err;
  auto def = std::get<std::shared_ptr<const saga::SagaDefinition>>(found);
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
    if (st.retry) s->set("retry", RetryObject(*st.retry));
    if (st.compensate_timeout) {
      s->set("compensate_timeout_ms", static_cast<int64_t>(st.compensate_timeout->count()));
    }
    if (st.compensate_retry) s->set("compensate_retry", RetryObject(*st.compensate_retry));
    steps->add(s);
  }
  o->set("steps", steps);
  // The loaded version, and every kept one that transactions still run on.
  auto loaded = sagas_ ? sagas_->Find(def->name) : nullptr;
  Array::Ptr versions = new Array();
  std::vector<saga::StoredSagaVersion> kept;
  if (options_.saga_versions != nullptr) {
    auto listed = options_.saga_versions->ListSagaVersions(def->name);
    if (!listed.ok()) return FromStatus(listed.status());
    kept = std::move(*listed);
  }
  if (loaded && std::none_of(kept.begin(), kept.end(), [&](const saga::StoredSagaVersion& v) {
        return v.version == loaded->version;
      })) {
    kept.insert(kept.begin(),
                saga::StoredSagaVersion{.version = loaded->version, .file = loaded->file});
  }
  for (const saga::StoredSagaVersion& v : kept) {
    const bool current = loaded && v.version == loaded->version;
    if (!current && v.unfinished == 0) continue;
    Object::Ptr entry = NewObject();
    entry->set("version", v.version);
    entry->set("loaded", current);
    entry->set("unfinished", v.unfinished);
    if (v.loaded_at != core::TimePoint{}) entry->set("first_used_at", Iso(v.loaded_at));
    versions->add(entry);
  }
  o->set("versions", versions);
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
