#include "coordinator/core/trace_context.h"

#include <cstdint>

#include "coordinator/core/environment.h"

namespace treaty::core {
namespace {

bool LowerHex(std::string_view s, size_t length) {
  if (s.size() != length) return false;
  bool nonzero = false;
  for (char c : s) {
    const bool digit = c >= '0' && c <= '9';
    const bool letter = c >= 'a' && c <= 'f';
    if (!digit && !letter) return false;
    if (c != '0') nonzero = true;
  }
  return nonzero;  // all-zero ids are invalid
}

// `digits` random lower-case hex digits, not all zero. Random01 gives 53 random bits a draw;
// 32 of them are used.
std::string RandomHex(IdGenerator& ids, size_t digits) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  while (out.size() < digits) {
    auto v = static_cast<uint32_t>(ids.Random01() * 4294967296.0);
    for (int j = 0; j < 8 && out.size() < digits; ++j) out += kHex[(v >> (4 * j)) & 0xf];
  }
  if (!LowerHex(out, digits)) out.back() = '1';  // all zero (1 in 2^64 or more): not valid
  return out;
}

}  // namespace

std::optional<TraceParent> ParseTraceParent(std::string_view h) {
  // version "-" trace-id "-" parent-id "-" trace-flags; a later version may append "-..." fields.
  if (h.size() < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') return std::nullopt;
  const std::string_view version = h.substr(0, 2);
  if (!LowerHex(version, 2) && version != "00") return std::nullopt;
  if (version == "ff") return std::nullopt;
  if (version == "00" && h.size() != 55) return std::nullopt;
  if (h.size() > 55 && h[55] != '-') return std::nullopt;
  const std::string_view flags = h.substr(53, 2);
  for (char c : flags) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  TraceParent tp{std::string(h.substr(3, 32)), std::string(h.substr(36, 16)), std::string(flags)};
  if (!LowerHex(tp.trace_id, 32) || !LowerHex(tp.span_id, 16)) return std::nullopt;
  return tp;
}

std::string FormatTraceParent(std::string_view trace_id, std::string_view span_id,
                              std::string_view flags) {
  std::string out = "00-";
  out += trace_id;
  out += '-';
  out += span_id;
  out += '-';
  out += flags;
  return out;
}

std::string NewTraceId(IdGenerator& ids) { return RandomHex(ids, 32); }
std::string NewSpanId(IdGenerator& ids) { return RandomHex(ids, 16); }

CallContext NewCallContext(IdGenerator& ids, const std::optional<std::string>& traceparent,
                           const std::optional<std::string>& tracestate,
                           std::map<std::string, std::string> headers) {
  CallContext c;
  std::optional<TraceParent> parent;
  if (traceparent) parent = ParseTraceParent(*traceparent);
  if (parent) {
    c.trace_id = parent->trace_id;
    c.parent_span_id = parent->span_id;
    c.trace_flags = parent->flags;
    // tracestate means nothing without the traceparent it came with.
    if (tracestate && tracestate->size() <= kMaxTracestateLength) c.tracestate = *tracestate;
  } else {
    c.trace_id = NewTraceId(ids);
  }
  c.span_id = NewSpanId(ids);
  c.headers = std::move(headers);
  for (const auto& [name, value] : c.headers) {
    if (IsAlwaysSecretHeader(name)) c.secret.insert(name);
  }
  return c;
}

std::map<std::string, std::string> CallHeaders(const CallContext& context, IdGenerator& ids) {
  std::map<std::string, std::string> out = context.headers;
  if (context.trace_id.empty()) return out;
  out["traceparent"] = FormatTraceParent(context.trace_id, NewSpanId(ids), context.trace_flags);
  if (!context.tracestate.empty()) {
    out["tracestate"] = context.tracestate;
  } else {
    out.erase("tracestate");
  }
  return out;
}

bool IsAlwaysSecretHeader(std::string_view name) {
  return name == "authorization" || name == "proxy-authorization" || name == "cookie";
}

std::map<std::string, std::string> ShownHeaders(const CallContext& context) {
  std::map<std::string, std::string> out = context.headers;
  for (auto& [name, value] : out) {
    if (context.secret.count(name) > 0) value = kMaskedValue;
  }
  return out;
}

}  // namespace treaty::core
