// The REST API's request validation: any bytes as the body (and query) of every endpoint that
// reads one must give an answer, never a crash, with a JSON body and a status the API documents.

#include <Poco/JSON/Parser.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>

#include "coordinator/api/treatyd_routes.h"
#include "coordinator/testing/in_memory_coordinator.h"

namespace {

using namespace treaty;

struct Api {
  Api()
      : transactions(
            core.service, core.driver.processors(), nullptr,
            api::TransactionsApiOptions{.allowlist = std::make_shared<api::UrlAllowlist>(
                                            std::vector<std::string>{"loopback", "*.svc"})}) {
    auto ok = [] { return http::ApiResponse{200, "application/json", "{}"}; };
    api::RegisterTreatydRoutes(router, transactions, api::OperatorEndpoints{ok, ok, ok});
    // A begun transaction for the branch registration endpoint.
    router.Dispatch(http::ApiRequest{.method = "POST",
                                     .path = "/v1/transactions",
                                     .body = R"({"gid":"fuzz-open","mode":"tcc"})"});
  }
  core::testing::InMemoryCoordinator core;
  api::TransactionsApi transactions;
  http::Router router;
};

void Check(const http::ApiResponse& r) {
  static const std::set<int> kDocumented = {200, 201, 202, 400, 404, 405, 409, 413, 503};
  if (!kDocumented.count(r.status)) std::abort();
  try {
    Poco::JSON::Parser parser;
    parser.parse(r.body);
  } catch (...) {
    std::abort();  // every answer is JSON
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Like one treatyd, made afresh every 5000 inputs so the in-memory store stays small.
  static std::unique_ptr<Api> api;
  static int runs = 0;
  if (!api || ++runs % 5000 == 0) {
    api.reset();
    api = std::make_unique<Api>();
  }
  std::string body(reinterpret_cast<const char*>(data), size);
  for (const char* path : {"/v1/transactions", "/v1/transactions/fuzz-open/branches",
                           "/v1/transactions/fuzz-open/submit", "/v1/sagas/none"}) {
    Check(api->router.Dispatch(http::ApiRequest{.method = "POST", .path = path, .body = body}));
  }
  // The same bytes as a query string: key=value pairs split at '&'.
  http::ApiRequest list{.method = "GET", .path = "/v1/transactions"};
  size_t start = 0;
  while (start <= body.size()) {
    size_t amp = body.find('&', start);
    std::string pair =
        body.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    size_t eq = pair.find('=');
    list.query[pair.substr(0, eq)] = eq == std::string::npos ? "" : pair.substr(eq + 1);
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  Check(api->router.Dispatch(list));
  return 0;
}
