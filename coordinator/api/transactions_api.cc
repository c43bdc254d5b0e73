#include "coordinator/api/transactions_api.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>

#include <algorithm>
#include <set>

#include "coordinator/api/api_responses.h"
#include "coordinator/api/request_parsing.h"
#include "coordinator/core/transaction.h"

namespace treaty::api {

using http::JsonError;
using Poco::JSON::Array;
using Poco::JSON::Object;

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
  add("POST", "/v1/transactions/{gid}/force", &TransactionsApi::Force, Access::kAdmin);
  add("GET", "/v1/stats", &TransactionsApi::Stats, Access::kClient);
  add("GET", "/v1/sagas", &TransactionsApi::ListSagas, Access::kClient);
  add("POST", "/v1/sagas/reload", &TransactionsApi::ReloadSagas, Access::kAdmin);
  add("GET", "/v1/sagas/{name}", &TransactionsApi::GetSaga, Access::kClient);
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

ApiResponse TransactionsApi::Begin(const ApiRequest& r) {
  auto parsed = ParseObject(r.body, false);
  if (auto* err = std::get_if<ApiResponse>(&parsed)) return *err;
  Object::Ptr body = std::get<Object::Ptr>(parsed);

  // The fields of every mode, then those some modes read: each refused, naming the modes that
  // read it, when this one does not (the processor would refuse it too, less helpfully).
  const std::vector<std::string> mode_fields = processors_.RequestFields();
  std::set<std::string> allowed = {"gid", "mode", "wait", "timeout", "branches", "notify"};
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
  if (auto e = CheckNotify(*body, options_.allowlist.get())) return BadField(*e);
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
      if (!list->isObject(i))
        return BadField({prefix.substr(0, prefix.size() - 1), "must be an object"});
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
  Object canonical(*body);
  canonical.remove("wait");
  CaptureCallContext(r, &req);
  return BeginAndAnswer(std::move(req), Stringify(Object::Ptr(new Object(canonical))), wait);
}

ApiResponse TransactionsApi::BeginAndAnswer(core::BeginRequest req, std::string canonical_json,
                                            bool wait) {
  const core::TimePoint received = Now();
  req.request_digest = Sha1Hex(canonical_json);
  req.request_json = std::move(canonical_json);
  req.wait = wait;
  auto begun = service_.Begin(req);
  if (!begun.ok()) return FromStatus(begun.status());
  return Answer(*begun, wait, received);
}

void TransactionsApi::CaptureCallContext(const ApiRequest& r, core::BeginRequest* req) const {
  if (auto it = r.headers.find("traceparent"); it != r.headers.end()) req->traceparent = it->second;
  if (auto it = r.headers.find("tracestate"); it != r.headers.end()) req->tracestate = it->second;
  for (const std::string& name : options_.propagate_headers) {
    auto it = r.headers.find(name);
    if (it == r.headers.end()) continue;
    req->propagated_headers[name] = it->second;
    if (options_.secret_headers.count(name) > 0) req->secret_headers.insert(name);
  }
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
    return JsonError(
        409, "conflict",
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
  const core::TimePoint received = Now();
  auto tx = change(r.path_params.at("gid"), wait, rolled_back);
  if (!tx.ok()) return FromStatus(tx.status());
  if (!wait) return Json(202, Outcome(*tx));
  if (core::IsFinal(tx->status)) return Json(200, Outcome(*tx));  // driven to its end already
  core::TimePoint until = received + options_.max_wait;           // the change may have driven it
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

ApiResponse TransactionsApi::Force(const ApiRequest& r) {
  auto parsed = ParseObject(r.body, false);
  if (auto* err = std::get_if<ApiResponse>(&parsed)) return *err;
  const Object& body = *std::get<Object::Ptr>(parsed);
  if (auto e = CheckKeys(body, {"status", "reason", "dry_run"}, "")) return BadField(*e);
  std::string status;
  if (!body.has("status")) return BadField({"status", "is required: committed or aborted"});
  if (auto e = GetString(body, "status", "status", &status)) return BadField(*e);
  auto to = core::ParseStatus(status);
  if (!to || (*to != core::TxStatus::kCommitted && *to != core::TxStatus::kAborted)) {
    return BadField({"status", "must be committed or aborted"});
  }
  std::string reason;
  if (auto e = GetString(body, "reason", "reason", &reason)) return BadField(*e);
  if (reason.find_first_not_of(" \t\r\n") == std::string::npos) {
    return BadField({"reason", "is required: say why (it goes into the decision log)"});
  }
  if (reason.size() > 1000) return BadField({"reason", "must be at most 1000 characters"});
  bool dry_run = false;
  if (auto e = GetBool(body, "dry_run", &dry_run)) return BadField(*e);
  const std::string actor = options_.caller_name ? options_.caller_name(r) : "anonymous";
  auto forced = service_.Force(r.path_params.at("gid"), *to, reason, actor, dry_run);
  if (!forced.ok()) return FromStatus(forced.status());
  Object::Ptr o = dry_run ? Outcome(forced->tx) : Details(forced->tx);
  o->set("dry_run", dry_run);
  Array::Ptr not_called = new Array();
  for (const core::BranchOp& op : forced->not_called) {
    Object::Ptr n = NewObject();
    n->set("id", op.branch_id);
    n->set("op", op.op);
    n->set(op.topic.empty() ? "url" : "topic", op.topic.empty() ? op.url : op.topic);
    not_called->add(n);
  }
  o->set("not_called", not_called);
  return Json(200, o);
}

ApiResponse TransactionsApi::Get(const ApiRequest& r) {
  auto tx = service_.Get(r.path_params.at("gid"));
  if (!tx.ok()) return FromStatus(tx.status());
  return Json(200, Details(*tx));
}

ApiResponse TransactionsApi::List(const ApiRequest& r) {
  core::ListFilter f;
  const core::TimePoint now = Now();
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
        return BadField(
            {"since", "must be a duration (\"15m\": that long ago) or an ISO 8601 time"});
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
  for (core::TxStatus st :
       {core::TxStatus::kActive, core::TxStatus::kPrepared, core::TxStatus::kCommitting,
        core::TxStatus::kAborting, core::TxStatus::kCommitted, core::TxStatus::kAborted}) {
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
