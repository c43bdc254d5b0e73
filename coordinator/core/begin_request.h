#pragma once

// What a client asks for when it starts or extends a transaction, parsed and shape-checked by a
// transport (the REST API, treatyctl) and checked against its mode by the mode's Processor.
// Fields that only some modes read are optional: a mode refuses those it does not read.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/duration.h"
#include "coordinator/core/transaction.h"

namespace treaty::core {

// What one op of a branch does differently from the branch's other ops (saga: the compensation's
// own payload, timeout and retry policy).
struct OpSettings {
  std::optional<std::string> payload_json;
  std::optional<Duration> timeout;
  std::optional<OpRetry> retry;
};

struct BranchSpec {
  std::string id;
  std::map<std::string, std::string> urls;  // op -> URL, e.g. "prepare" -> http://...
  std::string payload_json = "{}";
  std::optional<Duration> timeout;
  std::vector<std::string> after;                 // saga: steps that must succeed first
  std::optional<OpRetry> retry;                   // saga: the action's retry policy
  std::map<std::string, OpSettings> op_settings;  // per op, over the fields above (saga only)
};

// A half message of a msg transaction.
struct MessageSpec {
  std::string topic;
  std::string key;
  std::string value_json = "{}";  // the message's value
  std::map<std::string, std::string> headers;
};

struct BeginRequest {
  std::optional<std::string> gid;  // the client's, or a fresh one
  Mode mode = Mode::k2pc;
  // Given whole: submitted at once. Absent: begun, branches registered later, then submitted.
  std::optional<std::vector<BranchSpec>> branches;
  std::optional<Duration> timeout;  // the first phase's deadline; the configured default if unset
  std::string definition;           // saga: "name@version" it was built from
  std::string request_json;         // the request as received, for audit
  std::string request_digest;       // equal for equal requests
  // The caller will wait for the outcome (WaitFinal(BeginOutcome)): Begin watches it, then
  // drives it on the caller's thread before returning (as far as it goes now).
  bool wait = false;

  // Read by some modes only (Processor::RequestFields names them by these JSON names).
  std::optional<bool> sequential;                    // "sequential": first-phase calls in order
  std::optional<std::string> query_url;              // "query": the service's check-back URL
  std::optional<std::vector<MessageSpec>> messages;  // "messages": the half messages
  std::optional<Duration> check_back;                // "check_back": when to ask the service

  // From the starting request's headers (not its body): the W3C trace context (a new trace when
  // absent or invalid), and the headers named by treaty.yaml's propagate_headers, with which of
  // them are secret.
  std::optional<std::string> traceparent;
  std::optional<std::string> tracestate;
  std::map<std::string, std::string> propagated_headers;
  std::set<std::string> secret_headers;
};

}  // namespace treaty::core
