#pragma once

// The participant side of Treaty's protocol: the request every op receives, and the answers
// (2xx done, 409 final business refusal, anything else: not known yet, Treaty retries).

#include <Poco/JSON/Object.h>

#include <string>

#include "common/http/router.h"
#include "common/status.h"

namespace treaty::participant {

struct BranchRequest {
  std::string gid;
  std::string branch_id;
  std::string op;
  std::string mode;
  Poco::JSON::Object::Ptr payload;  // never null; {} when absent
  // The call's W3C trace context (its traceparent and tracestate headers; "" when absent or not
  // a valid traceparent): the kit keeps it with what the op writes (docs/participants.md,
  // "Trace context").
  std::string traceparent;
  std::string tracestate;
};

// Parses a protocol body; InvalidArgument naming the field when it is not one.
Result<BranchRequest> ParseBranchRequest(const std::string& body);

// What an op handler decided.
struct OpReply {
  int status = 200;     // 200 done, 409 refused, 503 try again
  std::string message;  // why, for the coordinator's last_error
  // A 2xx answer's further fields, as a JSON object ("" none): a saga step's output, which
  // later steps' payloads may name (docs/sagas.md).
  std::string output_json;
};

http::ApiResponse ToResponse(const OpReply& reply);

// Reads an integer or string field of a payload; nullopt when missing or of the wrong type.
std::optional<int64_t> PayloadInt(const Poco::JSON::Object& payload, const std::string& key);
std::optional<std::string> PayloadString(const Poco::JSON::Object& payload, const std::string& key);

}  // namespace treaty::participant
