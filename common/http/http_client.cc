#include "common/http/http_client.h"

#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>

#include <memory>
#include <sstream>

#include "common/http/tls.h"

namespace treaty::http {

Result<HttpReply> HttpCall(const std::string& method, const std::string& url,
                           const std::string& body, const CallOptions& options) {
  try {
    Poco::URI uri(url);
    std::unique_ptr<Poco::Net::HTTPClientSession> owned;
    if (uri.getScheme() == "https") {
      InitTls();
      // The system's CAs are read once (thousands of certificates), a CA file for each call.
      static const Poco::Net::Context::Ptr kSystemCas = new Poco::Net::Context(
          Poco::Net::Context::TLS_CLIENT_USE, "", "", "", Poco::Net::Context::VERIFY_RELAXED, 9,
          /*loadDefaultCAs=*/true);
      Poco::Net::Context::Ptr context =
          options.ca_file.empty()
              ? kSystemCas
              : new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, "", "", options.ca_file,
                                       Poco::Net::Context::VERIFY_RELAXED, 9,
                                       /*loadDefaultCAs=*/false);
      owned =
          std::make_unique<Poco::Net::HTTPSClientSession>(uri.getHost(), uri.getPort(), context);
    } else {
      owned = std::make_unique<Poco::Net::HTTPClientSession>(uri.getHost(), uri.getPort());
    }
    Poco::Net::HTTPClientSession& session = *owned;
    session.setTimeout(Poco::Timespan(static_cast<long>(options.timeout.count()) * 1000));
    Poco::Net::HTTPRequest req(method, uri.getPathAndQuery().empty() ? "/" : uri.getPathAndQuery(),
                               Poco::Net::HTTPMessage::HTTP_1_1);
    for (const auto& [name, value] : options.headers) req.set(name, value);
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
    for (const auto& [name, value] : resp) reply.headers[name] = value;
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
