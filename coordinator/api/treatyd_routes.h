#pragma once

// The whole route table of treatyd, in one place so that it can be compared with
// docs/openapi.yaml (treatyd_routes_test.cc) and served as treatyd serves it.

#include <functional>

#include "common/http/router.h"
#include "coordinator/api/transactions_api.h"

namespace treaty::api {

// The operator endpoints whose answers depend on treatyd's process state.
struct OperatorEndpoints {
  std::function<http::ApiResponse()> health;
  std::function<http::ApiResponse()> ready;
  std::function<http::ApiResponse()> metrics;
  std::function<http::ApiResponse()> traffic;  // the last minutes, second by second (JSON)
};

// Adds every route treatyd serves: the v1 API (with /v1/stats/traffic), /healthz, /readyz,
// /metrics, /openapi.yaml and the console. `transactions` and the endpoints' targets must outlive
// `router`.
void RegisterTreatydRoutes(http::Router& router, TransactionsApi& transactions,
                           const OperatorEndpoints& endpoints);

}  // namespace treaty::api
