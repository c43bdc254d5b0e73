#pragma once

// The transactions endpoints of the REST API (v1): JSON in, validated into the core's request
// types with errors that name the field, handed to TransactionService, JSON out.
//
//   POST /v1/transactions                  begin (with branches: submitted at once)
//   POST /v1/transactions/{gid}/branches   register a branch of a begun transaction
//   POST /v1/transactions/{gid}/submit     submit a begun transaction
//   POST /v1/transactions/{gid}/abort      abort before the decision
//   POST /v1/transactions/{gid}/retry      skip the backoff of a stuck transaction
//   GET  /v1/transactions/{gid}            status, branches, decision log
//   GET  /v1/transactions?status=&mode=&limit=&after=

#include <functional>

#include "common/duration.h"
#include "common/http/router.h"
#include "coordinator/core/transaction_service.h"

namespace treaty::api {

using http::ApiRequest;
using http::ApiResponse;
using http::Router;

struct TransactionsApiOptions {
  // Until this says true (the store is migrated), every endpoint answers 503.
  std::function<bool()> ready = [] { return true; };
  Duration max_wait = std::chrono::seconds(60);  // the longest a "wait" request is held open
  size_t max_branches = 64;
};

class TransactionsApi {
 public:
  // `service` and `driver` must outlive the routes registered.
  TransactionsApi(core::TransactionService& service, const core::TransactionDriver& driver,
                  TransactionsApiOptions options = {});

  void Register(Router& router);

 private:
  ApiResponse Begin(const ApiRequest& r);
  ApiResponse AddBranch(const ApiRequest& r);
  ApiResponse Submit(const ApiRequest& r);
  ApiResponse Abort(const ApiRequest& r);
  ApiResponse Retry(const ApiRequest& r);
  ApiResponse Get(const ApiRequest& r);
  ApiResponse List(const ApiRequest& r);

  core::TransactionService& service_;
  const core::TransactionDriver& driver_;
  const TransactionsApiOptions options_;
};

}  // namespace treaty::api
