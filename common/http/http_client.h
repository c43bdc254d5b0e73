#pragma once

// A blocking HTTP/1.1 call with a JSON body, as any client of treatyd makes it (treatyctl, the
// participants calling treatyd, the tests). Poco exceptions stop here.

#include <string>

#include "common/duration.h"
#include "common/status.h"

namespace treaty::http {

struct HttpReply {
  int status = 0;
  std::string body;
  std::string content_type;
};

// `url` is absolute (http://host:port/path). A connection failure or timeout is an error, any
// HTTP answer (also 4xx/5xx) a reply.
Result<HttpReply> HttpCall(const std::string& method, const std::string& url,
                           const std::string& body = "",
                           Duration timeout = std::chrono::seconds(10));

}  // namespace treaty::http
