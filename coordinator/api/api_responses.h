#pragma once

// The REST API's answers: JSON bodies of transactions (a summary, the details, the outcome) and
// the mapping of core Status codes to HTTP statuses, with server faults logged under a request id
// rather than shown.

#include <Poco/JSON/Object.h>

#include <string>

#include "common/http/router.h"
#include "common/status.h"
#include "coordinator/api/request_parsing.h"
#include "coordinator/core/transaction.h"

namespace treaty::api {

using http::ApiResponse;

// 400 "invalid", naming the field.
ApiResponse BadField(const FieldError& e);

// An answer for a failure that is not the client's: its cause (often the store's own words,
// with addresses and SQL in them) goes to the log under a request id, and only the id to the
// client.
ApiResponse ServerFault(int status, const char* code, const char* what, const Status& s);

// InvalidArgument 400 (naming its field), NotFound 404, Conflict and LeaseLost 409,
// ResourceExhausted 503 with Retry-After, Unavailable 503 and anything else 500 as server faults.
ApiResponse FromStatus(const Status& s);

ApiResponse Json(int status, const Poco::JSON::Object::Ptr& obj);

// ISO 8601 UTC with milliseconds.
std::string Iso(core::TimePoint t);

// A JSON object that keeps its keys in the order they were set.
Poco::JSON::Object::Ptr NewObject();

// A transaction in a list: gid, mode, status, times, reason, attention.
Poco::JSON::Object::Ptr Summary(const core::Transaction& tx);
// The summary with its branches' ops and the decision log.
// JSON text as a value to set in an answer (the text itself when it does not parse).
Poco::Dynamic::Var ParsedJson(const std::string& json);

Poco::JSON::Object::Ptr Details(const core::Transaction& tx);

// Sets a transaction's "traceparent" (its own span), "parent_span_id", "tracestate" and
// "propagated_headers" (secret values as "****") on `o`.
void AddCallContext(const core::CallContext& c, Poco::JSON::Object& o);
// What a change answers: gid, status, reason, attention.
Poco::JSON::Object::Ptr Outcome(const core::Transaction& tx);

}  // namespace treaty::api
