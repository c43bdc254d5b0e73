#pragma once

// Reading REST requests: a JSON object body checked once for what no field may hold, typed
// field getters whose errors name the field, a branch and the messages of a begin request in
// the shape their mode asks for, and query-parameter times.

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Object.h>

#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "common/duration.h"
#include "common/http/router.h"
#include "coordinator/api/url_allowlist.h"
#include "coordinator/core/begin_request.h"
#include "coordinator/core/processor.h"

namespace treaty::api {

// A validation failure: the field it concerns and what is wrong.
struct FieldError {
  std::string field;
  std::string message;
};

// Whether JSON text (as Stringify writes it) has a string with the character U+0000, which
// PostgreSQL cannot store: an escape \u0000 preceded by an even number of backslashes.
bool HasNulCharacter(const std::string& json);

// Compact JSON text of `v`.
std::string Stringify(const Poco::Dynamic::Var& v);

// Parses a JSON object body; an empty body is an empty object when `empty_ok`. A body with the
// character U+0000 anywhere (key or string) is refused, naming where.
std::variant<Poco::JSON::Object::Ptr, http::ApiResponse> ParseObject(const std::string& body,
                                                                     bool empty_ok);

// The first key of `o` not in `allowed`, as "unknown field" (`prefix` before its name).
std::optional<FieldError> CheckKeys(const Poco::JSON::Object& o,
                                    const std::set<std::string>& allowed,
                                    const std::string& prefix);
// Typed fields; absent leaves `out` as it is. The error names `field`.
std::optional<FieldError> GetString(const Poco::JSON::Object& o, const std::string& key,
                                    const std::string& field, std::string* out);
std::optional<FieldError> GetBool(const Poco::JSON::Object& o, const std::string& key, bool* out);
// "gid", checked as the core checks ids.
std::optional<FieldError> GetGid(const Poco::JSON::Object& o, std::optional<std::string>* out);
// A positive duration of at most 24h ("500ms", "10s").
std::optional<FieldError> GetDuration(const Poco::JSON::Object& o, const std::string& key,
                                      const std::string& field, std::optional<Duration>* out);

// An http(s) URL with a host, which `allow` admits (when given).
std::optional<FieldError> CheckUrl(const std::string& url, const std::string& field,
                                   const UrlAllowlist* allow);

// "notify": {"url", "events"} (completion webhooks): an object with a URL `allow` admits and
// events among committed, aborted, attention (absent: all). Stored as part of the request.
std::optional<FieldError> CheckNotify(const Poco::JSON::Object& o, const UrlAllowlist* allow);

// What every branch is checked against besides its shape.
struct BranchLimits {
  const UrlAllowlist* allow = nullptr;
  size_t max_payload_bytes = 0;
};

// A retry policy {attempts, backoff, max_backoff} at `field`.
std::optional<FieldError> ParseRetry(const Poco::Dynamic::Var& v, const std::string& field,
                                     core::OpRetry* out);

// A branch of `mode`'s shape: its ops (BranchOps) each allowed, those that must be given
// (RequiredOps(registered)) required, "after" where the mode orders branches, and "retry" and
// a later op's own "<op>_timeout", "<op>_retry", "<op>_payload" where it takes op policies.
std::optional<FieldError> ParseBranch(const Poco::JSON::Object& o, const std::string& prefix,
                                      const core::Processor& mode, bool registered,
                                      const BranchLimits& limits, core::BranchSpec* out);

// The "messages" list of a begin request: each {topic, key, payload, headers}.
std::optional<FieldError> ParseMessages(const Poco::JSON::Object& body, size_t max_payload_bytes,
                                        std::vector<core::MessageSpec>* out);

// Hex SHA-1 of `text`: a request's digest.
std::string Sha1Hex(const std::string& text);

// A point in time from a query parameter: an ISO 8601 time, or a duration meaning that long ago.
std::optional<core::TimePoint> ParseSince(const std::string& text, core::TimePoint now);

}  // namespace treaty::api
