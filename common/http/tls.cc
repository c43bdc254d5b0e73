#include "common/http/tls.h"

#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLManager.h>

#include <mutex>

namespace treaty::http {

void InitTls() {
  static std::once_flag once;
  std::call_once(once, [] {
    Poco::Net::initializeSSL();
    // Without these, Poco would look for handlers in an application's configuration file.
    Poco::Net::SSLManager::instance().initializeClient(
        nullptr, new Poco::Net::RejectCertificateHandler(/*handleErrorsOnServerSide=*/false),
        nullptr);
    Poco::Net::SSLManager::instance().initializeServer(
        nullptr, new Poco::Net::RejectCertificateHandler(/*handleErrorsOnServerSide=*/true),
        nullptr);
  });
}

}  // namespace treaty::http
