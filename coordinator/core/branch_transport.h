#pragma once

// How the core calls participants. Implemented over HTTP (coordinator/transport) and by fakes in
// unit tests. Thread-safe.

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "common/duration.h"

namespace treaty::core {

struct BranchCall {
  std::string url;
  std::string body;  // JSON, see the participant protocol
  std::string gid;
  std::string branch_id;
  std::string op;
  Duration timeout;
  bool wants_json_body = false;  // fill BranchReply::json_body
  // Sent besides the protocol's headers: traceparent, tracestate, propagated headers.
  std::map<std::string, std::string> headers;
};

struct BranchReply {
  enum class Outcome {
    kDone,     // 2xx
    kRefused,  // 409: a final business failure
    kUnknown,  // anything else: other statuses, timeouts, refused connections
  };
  Outcome outcome = Outcome::kUnknown;
  int http_status = 0;  // 0 when no HTTP answer came
  std::string detail;   // the answer's body or the error, shortened, for logs and last_error
  std::chrono::microseconds elapsed{0};  // how long the call took
  // With BranchCall::wants_json_body: a 2xx answer's whole body when it is valid JSON; else "".
  std::string json_body;
  // Set by the core, not the transport: the span id the call sent in its traceparent ("" none).
  std::string span_id;
};

// The protocol: 2xx done, 409 refused, everything else unknown.
BranchReply::Outcome ClassifyHttpStatus(int http_status);

class BranchTransport {
 public:
  virtual ~BranchTransport() = default;
  // Makes every call, in parallel, and returns the replies in the same order. Never throws; a
  // call that fails to complete gives an kUnknown reply.
  virtual std::vector<BranchReply> CallAll(const std::vector<BranchCall>& calls) = 0;
};

}  // namespace treaty::core
