#include "common/protocol/protocol.h"

namespace treaty::protocol {

std::string CallBody(std::string_view gid, std::string_view branch_id, std::string_view op,
                     std::string_view mode, std::string_view payload_json) {
  std::string body;
  body.reserve(96 + gid.size() + branch_id.size() + payload_json.size());
  body += "{\"gid\":\"";
  body += gid;
  body += "\",\"branch_id\":\"";
  body += branch_id;
  body += "\",\"op\":\"";
  body += op;
  body += "\",\"mode\":\"";
  body += mode;
  body += "\",\"payload\":";
  body += payload_json;
  body += "}";
  return body;
}

std::string MessageId(std::string_view gid, std::string_view branch_id) {
  std::string id(gid);
  id += ':';
  id += branch_id;
  return id;
}

namespace {

bool LowerHexNotZero(std::string_view s, size_t from, size_t length) {
  bool nonzero = false;
  for (size_t i = from; i < from + length; ++i) {
    const char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    nonzero = nonzero || c != '0';
  }
  return nonzero;
}

}  // namespace

std::string ValidTraceParent(std::string_view h) {
  if (h.size() != 55 || h.compare(0, 3, "00-") != 0 || h[35] != '-' || h[52] != '-') return "";
  if (!LowerHexNotZero(h, 3, 32) || !LowerHexNotZero(h, 36, 16)) return "";
  const char f0 = h[53], f1 = h[54];
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  return hex(f0) && hex(f1) ? std::string(h) : "";
}

std::string TraceIdOf(std::string_view traceparent) {
  return ValidTraceParent(traceparent).empty() ? "" : std::string(traceparent.substr(3, 32));
}

}  // namespace treaty::protocol
