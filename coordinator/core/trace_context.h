#pragma once

// W3C trace context (https://www.w3.org/TR/trace-context/) as a transaction carries it, and the
// headers a transaction passes on to its participants (treaty.yaml's propagate_headers).
// Standard library only: ids come from the core's IdGenerator.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace treaty::core {

class IdGenerator;

// What a transaction sends on each of its calls besides the protocol's own headers.
struct CallContext {
  std::string trace_id;        // 32 lower-case hex digits, never all zero; "" for none
  std::string span_id;         // the transaction's own span (16 hex): the parent of its calls
  std::string parent_span_id;  // the caller's span from its traceparent; "" when Treaty began it
  std::string trace_flags = "01";
  std::string tracestate;  // passed on as received (at most kMaxTracestateLength)
  // propagate_headers captured from the starting request: lower-case name -> value.
  std::map<std::string, std::string> headers;
  // Which of `headers` are secret: their values are sent to participants but never shown (API
  // answers, logs, console show kMaskedValue).
  std::set<std::string> secret;

  bool empty() const { return trace_id.empty() && headers.empty(); }
};

inline constexpr size_t kMaxTracestateLength = 512;

struct TraceParent {
  std::string trace_id;
  std::string span_id;
  std::string flags;
};

// A valid version-00 (or later, read as 00) traceparent; nullopt for anything else (all-zero
// ids, upper-case hex, wrong lengths), which the spec says to ignore and start afresh.
std::optional<TraceParent> ParseTraceParent(std::string_view header);

// "00-<trace_id>-<span_id>-<flags>".
std::string FormatTraceParent(std::string_view trace_id, std::string_view span_id,
                              std::string_view flags);

// Fresh random ids, never all zero.
std::string NewTraceId(IdGenerator& ids);
std::string NewSpanId(IdGenerator& ids);

// A transaction's context from the starting request's traceparent and tracestate (either may be
// absent or invalid: a new trace is started) and the headers it propagates.
CallContext NewCallContext(IdGenerator& ids, const std::optional<std::string>& traceparent,
                           const std::optional<std::string>& tracestate,
                           std::map<std::string, std::string> headers);

// The headers one call of the transaction sends: the propagated headers, then traceparent (a
// fresh child span of the transaction's span) and tracestate. Empty for a transaction without a
// context (stored before contexts were kept).
std::map<std::string, std::string> CallHeaders(const CallContext& context, IdGenerator& ids);

// Headers whose values are secret whatever the configuration says: authorization,
// proxy-authorization, cookie.
bool IsAlwaysSecretHeader(std::string_view lower_case_name);

// `context.headers` with each secret value replaced by kMaskedValue: what may be shown.
std::map<std::string, std::string> ShownHeaders(const CallContext& context);

inline constexpr const char* kMaskedValue = "****";

}  // namespace treaty::core
