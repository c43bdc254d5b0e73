#pragma once

// The transport-neutral face of treatyd's REST API: a request as the handlers see it, their
// answer, and the table that maps method and path pattern to a handler. No HTTP library here;
// the Poco server adapter (http_server.h) converts to and from these types.

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace treaty::http {

struct ApiRequest {
  std::string method;
  std::string remote;                              // the client's address, "host:port"
  std::string path;                                // without the query string
  std::map<std::string, std::string> query;        // decoded query parameters
  std::map<std::string, std::string> path_params;  // filled by the router: {gid} -> value
  std::map<std::string, std::string> headers;      // names in lower case
  std::string body;
};

struct ApiResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
};

// The error shape every endpoint uses: {"error": {"code", "message", "field"?}}.
ApiResponse JsonError(int status, std::string_view code, std::string_view message,
                      std::string_view field = {});

using Handler = std::function<ApiResponse(const ApiRequest&)>;

// Who may call a route: anyone, a client, or an operator. What a role means is the guard's.
enum class Access { kPublic, kClient, kAdmin };

// Runs before a matched route's handler: an answer (401, 403, 429, ...) stops the request there.
using Guard = std::function<std::optional<ApiResponse>(const ApiRequest&, Access)>;

// Routes by exact method and a path pattern whose "{name}" segments match one non-empty segment.
// Add() before serving; Dispatch() is then safe from many threads.
class Router {
 public:
  void Add(std::string method, std::string pattern, Handler handler,
           Access access = Access::kPublic);

  // Installs the guard every matched request passes first (none by default). Before serving.
  void SetGuard(Guard guard) { guard_ = std::move(guard); }

  // The matching handler's answer; 404 when no pattern matches the path, 405 when one does but
  // not for this method.
  ApiResponse Dispatch(ApiRequest request) const;

  // Every route as (method, pattern), in the order added: for documentation checks.
  std::vector<std::pair<std::string, std::string>> Routes() const;
  // The access level of the route (method, pattern); kPublic when there is none.
  Access AccessOf(const std::string& method, const std::string& pattern) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
    Access access;
  };
  std::vector<Route> routes_;
  Guard guard_;
};

}  // namespace treaty::http
