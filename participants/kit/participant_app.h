#pragma once

// Everything a demo participant process shares: config, the PostgreSQL pool, the schema, the
// HTTP server with /healthz and the fault switch, the 2PC resource with its endpoints
// (/2pc/prepare, /2pc/commit, /2pc/abort), and the presumed-abort sweep. A service adds its own
// schema, its business change for each op, and any read endpoints.

#include <functional>
#include <string>
#include <vector>

#include "common/http/router.h"
#include "common/log.h"
#include "common/pg/pg_pool.h"
#include "outbox/event_consumer.h"
#include "outbox/outbox.h"
#include "participants/kit/fault_switch.h"
#include "participants/kit/kit_retention.h"
#include "participants/kit/participant_config.h"
#include "participants/kit/twopc_resource.h"
#include "tcc/barrier.h"

namespace treaty::participant {

// One TCC or saga op's business change, run inside the barrier in the service's transaction.
// 200 commits it; anything else rolls it back and is the answer.
using BarrierChange = std::function<OpReply(pqxx::work& tx, const BranchRequest& r)>;

struct ParticipantSpec {
  std::string name;        // "inventory-svc"
  std::string env_prefix;  // "TREATY_INVENTORY_SVC_"
  std::string schema_sql;  // the service's own tables (IF NOT EXISTS)
  BusinessChange twopc_prepare;
  // TCC: /tcc/try, /tcc/confirm, /tcc/cancel, each through the barrier.
  BarrierChange tcc_try;
  BarrierChange tcc_confirm;
  BarrierChange tcc_cancel;
  // Saga steps: POST <path> runs `change` through the barrier (op "action" or "compensate", as
  // Treaty sends it). The fault switch knows each by its path without the leading slash.
  // `output`, when given, is the action's output (a JSON object, OpReply::output_json), read in
  // the same local transaction once the barrier let the action through or skipped it as a
  // repeat: a repeated action answers the output the first one did.
  struct SagaRoute {
    std::string path;
    BarrierChange change;
    std::function<std::string(pqxx::work& tx, const BranchRequest& r)> output;
  };
  std::vector<SagaRoute> saga_routes;
  // Applies one consumed event (through the inbox); null: the service consumes nothing.
  EventHandler on_event;
  // Registers the service's own endpoints (reads, admin) beside the protocol ones.
  std::function<void(http::Router&, pg::PgPool&, const ParticipantConfig&)> extra_routes;
};

// The topic the service's events go to (events.topic), for its business code.
const std::string& EventsTopic();

// This service's own base URL (http://host:port), once it serves.
const std::string& SelfUrl();

// Calls treatyd (coordinator.url + `path`) with a JSON body: the HTTP status and body, or
// Unavailable when it cannot be reached.
Result<std::pair<int, std::string>> CallCoordinator(const std::string& method,
                                                    const std::string& path,
                                                    const std::string& body);

// The whole main(): options, config, serve until SIGTERM.
int RunParticipant(int argc, char** argv, const ParticipantSpec& spec);

}  // namespace treaty::participant
