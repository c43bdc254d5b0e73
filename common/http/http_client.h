#pragma once

// A blocking HTTP/1.1 call with a JSON body, as any client of treatyd makes it (treatyctl, the
// participants calling treatyd, the tests). Poco exceptions stop here.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/duration.h"
#include "common/status.h"

namespace treaty::http {

struct HttpReply {
  int status = 0;
  std::string body;
  std::string content_type;
  std::map<std::string, std::string> headers;  // by name as sent (e.g. "Retry-After")
};

struct CallOptions {
  Duration timeout = std::chrono::seconds(10);
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Authorization
  // https: the server's certificate is verified against this CA file (empty: the system's CAs).
  std::string ca_file;

  // Sends "Authorization: Bearer <token>" (treatyd's auth tokens); an empty token adds nothing.
  CallOptions& WithBearer(const std::string& token) {
    if (!token.empty()) headers.emplace_back("Authorization", "Bearer " + token);
    return *this;
  }
};

// `url` is absolute (http:// or https://host:port/path). A connection failure, a timeout or a
// certificate that does not verify is an error; any HTTP answer (also 4xx/5xx) a reply.
Result<HttpReply> HttpCall(const std::string& method, const std::string& url,
                           const std::string& body, const CallOptions& options);

inline Result<HttpReply> HttpCall(const std::string& method, const std::string& url,
                                  const std::string& body = "",
                                  Duration timeout = std::chrono::seconds(10)) {
  return HttpCall(method, url, body, CallOptions{.timeout = timeout});
}

}  // namespace treaty::http
