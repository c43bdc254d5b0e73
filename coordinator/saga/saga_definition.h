#pragma once

// Named sagas defined in YAML files (docs/sagas.md):
//
//   saga: place-order
//   steps:
//     - name: reserve-stock
//       action:     ${env.INVENTORY_URL}/saga/reserve
//       compensate: ${env.INVENTORY_URL}/saga/release
//       payload: { sku: "${input.sku}", qty: "${input.qty}" }
//       timeout: 3s
//     - name: charge
//       after: [reserve-stock]
//       action: ...
//   notify: { url: "${env.HOOKS_URL}/treaty", events: [committed, aborted] }   # optional
//
// A step without `compensate` only goes forward. URLs may use ${env.NAME}, resolved when the
// file is loaded. Payloads may use ${input.a.b}, resolved from the start request's input: a
// string that is exactly one placeholder takes the input's value with its JSON type; a
// placeholder inside a longer string is replaced by the value's text. Nothing is executed.
// `notify` is the completion webhook (docs/api.md) of every transaction started by name whose
// start request has no "notify" of its own (the request's wins).
// Every error names the file, the line and the key.

#include <Poco/Dynamic/Var.h>
#include <Poco/JSON/Object.h>

#include <optional>
#include <string>
#include <vector>

#include "common/duration.h"
#include "common/status.h"
#include "config/config_reader.h"
#include "coordinator/core/transaction_service.h"

namespace treaty::saga {

struct SagaStep {
  std::string name;
  std::string action;
  std::string compensate;  // empty: forward only
  std::vector<std::string> after;
  std::optional<Duration> timeout;     // each call, the compensation's too unless it has its own
  Poco::Dynamic::Var payload;          // with ${input...} and ${steps...} placeholders; empty: {}
  std::optional<core::OpRetry> retry;  // the action's
  // The compensation's own, when given (its payload may also name its own step's output).
  std::optional<Duration> compensate_timeout;
  std::optional<core::OpRetry> compensate_retry;
  Poco::Dynamic::Var compensate_payload;  // empty: the step's payload
};

struct SagaDefinition {
  std::string name;
  std::string version;  // a digest of the file's text: the same file, the same version
  std::string file;
  std::string text;  // the file's text, as loaded
  std::vector<SagaStep> steps;
  // The definition's completion webhook: its URL (${env...} resolved) and events (empty: all).
  // The URL passes participants.allow when a transaction starts, as the steps' URLs do.
  struct Notify {
    std::string url;
    std::vector<std::string> events;
  };
  std::optional<Notify> notify;
};

// Parses one definition; `file` names it in errors.
Result<SagaDefinition> ParseSagaDefinition(std::string_view yaml_text, const std::string& file,
                                           const Environment& env);

// Loads every file matching `patterns` (globs; relative ones against `base_dir`). Errors of all
// files, one a line. Two definitions with the same name are an error.
Result<std::vector<SagaDefinition>> LoadSagaDefinitions(const std::vector<std::string>& patterns,
                                                        const std::string& base_dir,
                                                        const Environment& env);

// The branches of one run of `def` with `input`; InvalidArgument naming the input path
// ("input.sku is missing") when a placeholder has nothing to take.
Result<std::vector<core::BranchSpec>> Instantiate(const SagaDefinition& def,
                                                  const Poco::JSON::Object::Ptr& input);

// A request to begin one run of `def` with `input` (Instantiate's branches, the definition's
// name@version); the caller adds the gid, timeout and audit fields.
Result<core::BeginRequest> StartRequest(const SagaDefinition& def,
                                        const Poco::JSON::Object::Ptr& input);

}  // namespace treaty::saga
