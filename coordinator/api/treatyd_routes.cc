#include "coordinator/api/treatyd_routes.h"

#include "coordinator/console/console_assets.h"

namespace treaty::api {

void RegisterTreatydRoutes(http::Router& router, TransactionsApi& transactions,
                           const OperatorEndpoints& endpoints) {
  router.Add("GET", "/healthz", [h = endpoints.health](const http::ApiRequest&) { return h(); });
  router.Add("GET", "/readyz", [h = endpoints.ready](const http::ApiRequest&) { return h(); });
  router.Add("GET", "/metrics", [h = endpoints.metrics](const http::ApiRequest&) { return h(); });
  // Counts only, no gid, but the traffic is a client's to read, as /v1/stats is.
  router.Add(
      "GET", "/v1/stats/traffic", [h = endpoints.traffic](const http::ApiRequest&) { return h(); },
      http::Access::kClient);
  router.Add("GET", "/openapi.yaml", [](const http::ApiRequest&) {
    return http::ApiResponse{200, "application/yaml", std::string(console::OpenApiDocument())};
  });
  transactions.Register(router);
  console::RegisterConsole(router);
}

}  // namespace treaty::api
