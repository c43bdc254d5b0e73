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

}  // namespace treaty::protocol
