#pragma once

// The transactions endpoints of the REST API (v1): JSON in, validated into the core's request
// types with errors that name the field, handed to TransactionService, JSON out.
//
//   POST /v1/transactions                  begin (with branches: submitted at once)
//   POST /v1/transactions/{gid}/branches   register a branch of a begun transaction
//   POST /v1/transactions/{gid}/submit     submit a begun transaction
//   POST /v1/transactions/{gid}/abort      abort before the decision
//   POST /v1/transactions/{gid}/retry      skip the backoff of a stuck transaction
//   POST /v1/transactions/{gid}/force      end a stuck transaction without the calls due (admin)
//   GET  /v1/transactions/{gid}            status, branches, decision log
//   GET  /v1/transactions?status=&mode=&since=&older_than=&stuck=&limit=&after=
//   GET  /v1/stats                         how many transactions are in each status
//   POST /v1/sagas/{name}                  start a named saga with an input
//   GET  /v1/sagas                         the loaded definitions and their versions
//   GET  /v1/sagas/{name}                  one definition, and its versions in use
//   GET  /v1/sagas/{name}@{version}        one version of it
//   POST /v1/sagas/reload                  load the definition files again

#include <functional>
#include <memory>
#include <set>
#include <variant>

#include "common/duration.h"
#include "common/http/router.h"
#include "common/thread_annotations.h"
#include "coordinator/api/url_allowlist.h"
#include "coordinator/core/environment.h"
#include "coordinator/core/processor_registry.h"
#include "coordinator/core/transaction_service.h"
#include "coordinator/saga/saga_registry.h"
#include "coordinator/saga/saga_versions.h"

namespace treaty::api {

using http::ApiRequest;
using http::ApiResponse;
using http::Router;

struct TransactionsApiOptions {
  // Until this says true (the store is migrated), every endpoint answers 503.
  std::function<bool()> ready = [] { return true; };
  Duration max_wait = std::chrono::seconds(60);  // the longest a "wait" request is held open
  size_t max_branches = 64;
  size_t max_payload_bytes = 64 << 10;  // one branch's payload, one message's value
  // The participants that may be called; null: any (unit tests).
  std::shared_ptr<const UrlAllowlist> allowlist;
  // What "now" is when compared with stored times (a wait's end, a list's age filters): the
  // store's clock in treatyd, as the core's; null: this host's clock (unit tests).
  core::Clock* clock = nullptr;
  // Who made a request, for the decision log of a force-finish (AccessPolicy::CallerName);
  // null: "anonymous".
  std::function<std::string(const ApiRequest&)> caller_name;
  // The versions of saga definitions kept for name@version; null: only the loaded ones.
  saga::SagaVersionStore* saga_versions = nullptr;
  // treaty.yaml's propagate_headers and secret_headers (lower-case names).
  std::vector<std::string> propagate_headers;
  std::set<std::string> secret_headers;
};

class TransactionsApi {
 public:
  // `service` and the processors `processors` names must outlive the routes registered: the
  // processors check each request against its mode. `sagas` may be null: no named sagas are
  // served.
  TransactionsApi(core::TransactionService& service, core::ProcessorRegistry processors,
                  saga::SagaRegistry* sagas, TransactionsApiOptions options = {});

  void Register(Router& router);

 private:
  core::TimePoint Now() const {
    return options_.clock != nullptr ? options_.clock->Now() : std::chrono::system_clock::now();
  }
  ApiResponse Begin(const ApiRequest& r);
  ApiResponse AddBranch(const ApiRequest& r);
  ApiResponse Submit(const ApiRequest& r);
  ApiResponse Abort(const ApiRequest& r);
  ApiResponse Retry(const ApiRequest& r);
  ApiResponse Force(const ApiRequest& r);
  ApiResponse Get(const ApiRequest& r);
  ApiResponse List(const ApiRequest& r);
  ApiResponse Stats(const ApiRequest& r);
  ApiResponse StartSaga(const ApiRequest& r);
  ApiResponse ListSagas(const ApiRequest& r);
  ApiResponse GetSaga(const ApiRequest& r);
  ApiResponse ReloadSagas(const ApiRequest& r);
  // The definition `name_at_version` ("name" or "name@version") names: the loaded one, or a
  // kept version (SagaVersionStore) while transactions still run on it; else an answer (404).
  std::variant<std::shared_ptr<const saga::SagaDefinition>, ApiResponse> FindSaga(
      const std::string& name_at_version);
  // Keeps `def` in the SagaVersionStore once (before its first transaction starts).
  Status KeepVersion(const saga::SagaDefinition& def);
  // Submit and abort: reads {"wait"} (and, when `takes_rolled_back`, {"rolled_back"}), runs
  // `change` on the path's gid, answers at once (202) or, with wait, once final (200) or at
  // max_wait (and the deadline, when `until_deadline`).
  ApiResponse ChangeAndAnswer(const ApiRequest& r,
                              const std::function<Result<core::Transaction>(
                                  const std::string&, bool wait, bool rolled_back)>& change,
                              bool until_deadline, bool takes_rolled_back);
  // Begins `req` and answers it (Answer). `canonical_json`, the request as received without
  // "wait", identifies it: the same body again is the same transaction (its digest).
  ApiResponse BeginAndAnswer(core::BeginRequest req, std::string canonical_json, bool wait);
  // Fills `req`'s trace context and propagated headers from the starting request's headers.
  void CaptureCallContext(const ApiRequest& r, core::BeginRequest* req) const;
  // Answers a begun transaction: at once (201), or once final with `wait` (200).
  // `received`: when the request came; waiting ends max_wait after it.
  ApiResponse Answer(const core::BeginOutcome& begun, bool wait, core::TimePoint received);

  core::TransactionService& service_;
  const core::ProcessorRegistry processors_;
  saga::SagaRegistry* sagas_;
  const TransactionsApiOptions options_;
  Mutex kept_mu_;
  std::set<std::string> kept_versions_ GUARDED_BY(kept_mu_);  // "name@version" kept already
};

}  // namespace treaty::api
