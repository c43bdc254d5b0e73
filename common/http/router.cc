#include "common/http/router.h"

#include "common/json_text.h"

namespace treaty::http {
namespace {

std::vector<std::string> Split(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

ApiResponse JsonError(int status, std::string_view code, std::string_view message,
                      std::string_view field) {
  std::string body =
      "{\"error\":{\"code\":" + JsonQuote(code) + ",\"message\":" + JsonQuote(message);
  if (!field.empty()) body += ",\"field\":" + JsonQuote(field);
  body += "}}";
  return ApiResponse{status, "application/json", std::move(body)};
}

void Router::Add(std::string method, std::string pattern, Handler handler, Access access) {
  std::vector<std::string> segments = Split(pattern);
  routes_.push_back(Route{std::move(method), std::move(pattern), std::move(segments),
                          std::move(handler), access});
}

Access Router::AccessOf(const std::string& method, const std::string& pattern) const {
  for (const Route& r : routes_) {
    if (r.method == method && r.pattern == pattern) return r.access;
  }
  return Access::kPublic;
}

std::vector<std::pair<std::string, std::string>> Router::Routes() const {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(routes_.size());
  for (const Route& r : routes_) out.emplace_back(r.method, r.pattern);
  return out;
}

ApiResponse Router::Dispatch(ApiRequest request) const {
  std::vector<std::string> segments = Split(request.path);
  bool path_matched = false;
  for (const Route& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::map<std::string, std::string> params;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      const std::string& want = route.segments[i];
      if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
        params[want.substr(1, want.size() - 2)] = segments[i];
      } else {
        match = want == segments[i];
      }
    }
    if (!match) continue;
    path_matched = true;
    if (route.method != request.method) continue;
    request.path_params = std::move(params);
    if (guard_) {
      if (std::optional<ApiResponse> refused = guard_(request, route.access)) return *refused;
    }
    return route.handler(request);
  }
  if (path_matched) {
    return JsonError(405, "method_not_allowed",
                     request.method + " is not allowed on " + request.path);
  }
  return JsonError(404, "not_found", "no such endpoint: " + request.path);
}

}  // namespace treaty::http
