#include "coordinator/api/api_responses.h"

#include <Poco/DateTimeFormatter.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/ParseHandler.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Timestamp.h>

#include <atomic>

#include "common/log.h"

namespace treaty::api {
namespace {

const Logger kLog("api");

}  // namespace

using http::JsonError;
using Poco::JSON::Array;
using Poco::JSON::Object;

ApiResponse BadField(const FieldError& e) { return JsonError(400, "invalid", e.message, e.field); }

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
  if (!tx.context.trace_id.empty()) o->set("trace_id", tx.context.trace_id);
  return o;
}

Poco::Dynamic::Var ParsedJson(const std::string& json) {
  try {
    Poco::JSON::Parser parser(new Poco::JSON::ParseHandler(/*preserveObjectOrder=*/true));
    return parser.parse(json);
  } catch (const std::exception&) {
    return json;  // stored by this code as JSON: not expected
  }
}

Object::Ptr Details(const core::Transaction& tx) {
  Object::Ptr o = Summary(tx);
  o->set("submitted", tx.submitted);
  if (!tx.definition.empty()) o->set("definition", tx.definition);
  AddCallContext(tx.context, *o);
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
    if (op.retry) {
      Object::Ptr retry = NewObject();
      if (op.retry->attempts > 0) retry->set("attempts", op.retry->attempts);
      if (op.retry->backoff)
        retry->set("backoff_ms", static_cast<int64_t>(op.retry->backoff->count()));
      if (op.retry->max_backoff) {
        retry->set("max_backoff_ms", static_cast<int64_t>(op.retry->max_backoff->count()));
      }
      b->set("retry", retry);
    }
    if (!op.output_json.empty()) b->set("output", ParsedJson(op.output_json));
    Array::Ptr calls = new Array();
    for (const core::OpCall& c : op.calls) {
      Object::Ptr call = NewObject();
      call->set("started_at", Iso(c.started));
      call->set("ms", static_cast<double>(c.took.count()) / 1000.0);
      // A call without a definite answer (an error, a timeout, another status) is retried.
      call->set("outcome", c.outcome == core::OpStatus::kPending
                               ? std::string("unknown")
                               : std::string(core::OpStatusName(c.outcome)));
      calls->add(call);
    }
    b->set("calls", calls);
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
    if (!e.actor.empty()) l->set("actor", e.actor);
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
  if (!tx.context.trace_id.empty()) o->set("trace_id", tx.context.trace_id);
  return o;
}

void AddCallContext(const core::CallContext& c, Object& o) {
  if (!c.trace_id.empty()) {
    o.set("traceparent", core::FormatTraceParent(c.trace_id, c.span_id, c.trace_flags));
    if (!c.parent_span_id.empty()) o.set("parent_span_id", c.parent_span_id);
    if (!c.tracestate.empty()) o.set("tracestate", c.tracestate);
  }
  if (!c.headers.empty()) {
    Object::Ptr headers = NewObject();
    for (const auto& [name, value] : core::ShownHeaders(c)) headers->set(name, value);
    o.set("propagated_headers", headers);
  }
}

}  // namespace treaty::api
