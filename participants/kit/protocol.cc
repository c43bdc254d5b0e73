#include "participants/kit/protocol.h"

#include <Poco/Exception.h>
#include <Poco/JSON/Parser.h>

#include "common/json_text.h"

namespace treaty::participant {

Result<BranchRequest> ParseBranchRequest(const std::string& body) {
  try {
    Poco::JSON::Parser parser;
    Poco::Dynamic::Var v = parser.parse(body);
    if (v.type() != typeid(Poco::JSON::Object::Ptr)) {
      return Status::InvalidArgument("body must be a JSON object");
    }
    auto o = v.extract<Poco::JSON::Object::Ptr>();
    BranchRequest r;
    for (auto [key, out] : {std::pair<const char*, std::string*>{"gid", &r.gid},
                            {"branch_id", &r.branch_id},
                            {"op", &r.op},
                            {"mode", &r.mode}}) {
      if (!o->has(key) || !o->get(key).isString() || o->getValue<std::string>(key).empty()) {
        return Status::InvalidArgument(std::string(key) + " is required");
      }
      *out = o->getValue<std::string>(key);
    }
    r.payload = o->has("payload") && o->get("payload").type() == typeid(Poco::JSON::Object::Ptr)
                    ? o->getObject("payload")
                    : Poco::JSON::Object::Ptr(new Poco::JSON::Object());
    return r;
  } catch (const Poco::Exception& e) {
    return Status::InvalidArgument("body is not valid JSON: " + e.message());
  }
}

http::ApiResponse ToResponse(const OpReply& reply) {
  if (reply.status >= 200 && reply.status < 300) {
    std::string body = "{\"result\":" + JsonQuote(reply.message);
    // The output's fields after "result": {"k": v, ...} without its braces.
    if (reply.output_json.size() > 2 && reply.output_json.front() == '{') {
      body += "," + reply.output_json.substr(1, reply.output_json.size() - 2);
    }
    return {reply.status, "application/json", body + "}"};
  }
  return http::JsonError(reply.status, reply.status == 409 ? "refused" : "retry", reply.message);
}

std::optional<int64_t> PayloadInt(const Poco::JSON::Object& payload, const std::string& key) {
  if (!payload.has(key)) return std::nullopt;
  const Poco::Dynamic::Var& v = payload.get(key);
  if (!v.isInteger()) return std::nullopt;
  return v.convert<int64_t>();
}

std::optional<std::string> PayloadString(const Poco::JSON::Object& payload,
                                         const std::string& key) {
  if (!payload.has(key) || !payload.get(key).isString()) return std::nullopt;
  return payload.get(key).extract<std::string>();
}

}  // namespace treaty::participant
