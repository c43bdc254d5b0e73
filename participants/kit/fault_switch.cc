#include "participants/kit/fault_switch.h"

#include <Poco/Exception.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

namespace treaty::participant {

void FaultSwitch::Register(http::Router& router) {
  router.Add("POST", "/admin/faults", [this](const http::ApiRequest& r) {
    std::string op, action;
    int status = 503;
    int64_t ms = 0;
    try {
      Poco::JSON::Parser parser;
      auto o = parser.parse(r.body).extract<Poco::JSON::Object::Ptr>();
      op = o->optValue<std::string>("op", "");
      action = o->optValue<std::string>("action", "");
      status = o->optValue<int>("status", 503);
      ms = o->optValue<int64_t>("ms", 0);
    } catch (const Poco::Exception& e) {
      return http::JsonError(400, "invalid_json", e.message());
    }
    if (op.empty()) return http::JsonError(400, "invalid", "is required", "op");
    if (action != "fail" && action != "hang" && action != "delay" && action != "off") {
      return http::JsonError(400, "invalid", "must be fail, hang, delay or off", "action");
    }
    if (action == "delay" && (ms <= 0 || ms > 60000)) {
      return http::JsonError(400, "invalid", "must be 1 to 60000 (milliseconds)", "ms");
    }
    {
      MutexLock lock(mu_);
      if (action == "off") {
        faults_.erase(op);
      } else {
        faults_[op] = Fault{action, status, std::chrono::milliseconds(ms)};
      }
    }
    changed_.notify_all();
    return http::ApiResponse{200, "application/json",
                             "{\"op\":\"" + op + "\",\"action\":\"" + action + "\"}"};
  });
  router.Add("GET", "/admin/faults", [this](const http::ApiRequest&) {
    MutexLock lock(mu_);
    std::string body = "{";
    for (const auto& [op, f] : faults_) {
      body += (body.size() > 1 ? "," : "") + std::string("\"") + op + "\":\"" + f.action + "\"";
    }
    return http::ApiResponse{200, "application/json", body + "}"};
  });
}

std::optional<OpReply> FaultSwitch::Intercept(const std::string& op) {
  MutexLock lock(mu_);
  auto it = faults_.find(op);
  if (it == faults_.end()) return std::nullopt;
  if (it->second.action == "fail") {
    return OpReply{it->second.status, "fault injected: " + op + " fails"};
  }
  if (it->second.action == "delay") {
    // Slow, then done as usual (a switch-off ends the wait early).
    const Duration delay = it->second.delay;
    changed_.wait_for(lock.native(), delay, [&]() REQUIRES(mu_) { return faults_.count(op) == 0; });
    return std::nullopt;
  }
  // hang: until switched off (bounded, so a forgotten switch cannot pin a thread forever).
  changed_.wait_for(lock.native(), std::chrono::minutes(5),
                    [&]() REQUIRES(mu_) { return faults_.count(op) == 0; });
  return OpReply{503, "fault injected: " + op + " hung"};
}

}  // namespace treaty::participant
