#include "common/http/http_client.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>

#include <sstream>

namespace treaty::http {

Result<HttpReply> HttpCall(const std::string& method, const std::string& url,
                           const std::string& body, Duration timeout) {
  try {
    Poco::URI uri(url);
    Poco::Net::HTTPClientSession session(uri.getHost(), uri.getPort());
    session.setTimeout(Poco::Timespan(static_cast<long>(timeout.count()) * 1000));
    Poco::Net::HTTPRequest req(method, uri.getPathAndQuery(), Poco::Net::HTTPMessage::HTTP_1_1);
    if (!body.empty()) {
      req.setContentType("application/json");
      req.setContentLength(static_cast<std::streamsize>(body.size()));
    }
    session.sendRequest(req) << body;
    Poco::Net::HTTPResponse resp;
    std::istream& in = session.receiveResponse(resp);
    HttpReply reply;
    reply.status = static_cast<int>(resp.getStatus());
    reply.content_type = resp.getContentType();
    std::ostringstream out;
    Poco::StreamCopier::copyStream(in, out);
    reply.body = out.str();
    return reply;
  } catch (const Poco::Exception& e) {
    return Status::Unavailable(method + " " + url + ": " + e.displayText());
  } catch (const std::exception& e) {
    return Status::Unavailable(method + " " + url + ": " + e.what());
  }
}

}  // namespace treaty::http
