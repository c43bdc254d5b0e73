#include "participants/kit/participant_app.h"

#include <Poco/Exception.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/URI.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <iostream>
#include <iterator>
#include <thread>

#include "common/http/http_client.h"
#include "common/http/http_server.h"
#include "common/json_text.h"
#include "common/protocol/protocol.h"
#include "common/service_main.h"
#include "config/treaty_config.h"
#include "mqtx/msg_participant.h"

namespace treaty::participant {
namespace {

// Asks the coordinator for a transaction's status: "" when it does not know the gid (404),
// nullopt when it could not be asked.
std::optional<std::string> CoordinatorStatus(const std::string& base, const std::string& token,
                                             const std::string& gid) {
  auto r = http::HttpCall("GET", base + "/v1/transactions/" + gid, "",
                          http::CallOptions{.timeout = std::chrono::seconds(5)}.WithBearer(token));
  if (!r.ok()) return std::nullopt;
  if (r->status == 404) return std::string();
  if (r->status != 200) return std::nullopt;
  try {
    Poco::JSON::Parser parser;
    auto o = parser.parse(r->body).extract<Poco::JSON::Object::Ptr>();
    return o->optValue<std::string>("status", "");
  } catch (const Poco::Exception&) {
    return std::nullopt;
  }
}

// Presumed abort from the participant's side: a prepared transaction nobody finishes would keep
// its locks forever, so old ones are looked up at the coordinator and finished by its answer.
class PreparedSweep {
 public:
  PreparedSweep(TwoPhaseResource& resource, const ParticipantConfig& config, const Logger& log)
      : resource_(resource), config_(config), log_(log) {
    thread_ = std::thread([this] { Run(); });
  }
  ~PreparedSweep() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      lock.unlock();
      SweepOnce();
      lock.lock();
      cv_.wait_for(lock, config_.sweep_interval, [this] { return stopping_; });
    }
  }

  void SweepOnce() {
    auto prepared = resource_.ListPrepared(config_.sweep_older_than);
    if (!prepared.ok()) return;
    for (const auto& p : *prepared) {
      auto status = CoordinatorStatus(config_.coordinator_url, config_.coordinator_token, p.gid);
      if (!status) continue;  // cannot ask now: keep it, ask again later
      bool commit = *status == "committing" || *status == "committed";
      bool abort = status->empty() || *status == "aborting" || *status == "aborted";
      if (!commit && !abort) continue;  // undecided
      Status s = resource_.Finish(p.gid, p.branch_id, commit);
      log_.Info(commit ? "sweep committed a prepared transaction"
                       : "sweep rolled back a prepared transaction",
                {{"gid", p.gid},
                 {"branch_id", p.branch_id},
                 {"coordinator_says", status->empty() ? "unknown gid" : *status},
                 {"result", s.ok() ? "done" : s.message()}});
    }
  }

  TwoPhaseResource& resource_;
  const ParticipantConfig& config_;
  const Logger& log_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

std::string g_events_topic = "orders.events";  // set once before serving
std::string g_self_url;                        // set once when serving
std::string g_coordinator_url;                 // set once before serving
std::string g_coordinator_token;               // set once before serving

int Serve(const ParticipantSpec& spec, const ParticipantConfig& config, const ServeArgs& args) {
  g_events_topic = config.events_topic;
  g_coordinator_url = config.coordinator_url;
  g_coordinator_token = config.coordinator_token;
  SetLogLevel(*ParseLogLevel(config.log_level));
  Logger log(spec.name);
  log.Info("starting", {{"listen", config.listen.ToString()},
                        {"database", MaskUrlPassword(config.database_url)},
                        {"coordinator", config.coordinator_url}});
  pg::PgPool pool(config.database_url, std::chrono::seconds(5), static_cast<int>(config.pool_size));
  // The schema; the database may still be starting, so try for a while.
  Status schema = Status::Unavailable("not tried");
  for (int attempt = 0; attempt < 60 && !schema.ok(); ++attempt) {
    auto r = pool.Run<bool>([&](pqxx::connection& c) -> Result<bool> {
      pqxx::work w(c);
      // A prepared transaction this service left when it stopped holds locks on its tables
      // until the coordinator's commit or abort reaches this very service: the DDL (CREATE
      // INDEX IF NOT EXISTS locks the table before it looks) must not wait for it.
      w.exec("SET LOCAL lock_timeout = '2s'");
      w.exec(TwoPhaseResource::SchemaSql());
      w.exec(Barrier::SchemaSql());
      w.exec(Outbox::SchemaSql());
      w.exec(Inbox::SchemaSql());
      w.exec(KitRetention::SchemaSql());
      if (!spec.schema_sql.empty()) w.exec(spec.schema_sql);
      w.commit();
      return true;
    });
    schema = r.ok() ? Status::Ok() : r.status();
    if (!schema.ok() && schema.message().find("lock timeout") != std::string::npos) {
      // The schema is there from an earlier start: serve, and finish what holds the lock.
      auto present = pool.Run<bool>([](pqxx::connection& c) -> Result<bool> {
        pqxx::read_transaction t(c);
        return t
            .exec(
                "SELECT to_regclass('treaty_2pc_branches') IS NOT NULL AND "
                "to_regclass('treaty_barrier') IS NOT NULL AND "
                "to_regclass('treaty_outbox') IS NOT NULL AND "
                "to_regclass('treaty_inbox') IS NOT NULL")[0][0]
            .as<bool>();
      });
      if (present.ok() && *present) {
        log.Warn("schema present, not updated: a lock is held (a prepared transaction?)",
                 {{"error", schema.message()}});
        schema = Status::Ok();
        break;
      }
    }
    if (!schema.ok()) {
      log.Warn("database not ready; retrying", {{"error", schema.message()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  if (!schema.ok()) {
    log.Error("cannot create the schema", {{"error", schema.message()}});
    return kExitServeFailed;
  }

  TwoPhaseResource twopc(pool);
  FaultSwitch faults;
  http::Router router;
  router.Add("GET", "/healthz", [](const http::ApiRequest&) {
    return http::ApiResponse{200, "application/json", R"({"status":"ok"})"};
  });
  faults.Register(router);
  // The retention of the kit's tables runs once the service serves; /metrics shows its counts.
  std::unique_ptr<KitRetention> retention;
  std::atomic<KitRetention*> retention_ready{nullptr};
  router.Add("GET", "/metrics", [&retention_ready](const http::ApiRequest&) {
    KitRetention* r = retention_ready.load();
    return http::ApiResponse{200, "text/plain; version=0.0.4", r ? r->Metrics() : ""};
  });
  // `op`: the fault switch's name for the route. `accepts`: the protocol ops the route serves
  // (the body's "op"); another is a 400 naming the field, never a change run under a name the
  // barrier would file it by (an op it does not know would be neither repeated nor undone).
  auto op_route = [&](const std::string& path, const std::string& op,
                      std::function<OpReply(const BranchRequest&)> handle,
                      std::vector<std::string> accepts = {}) {
    if (accepts.empty()) accepts = {op};
    router.Add("POST", path, [&, path, op, handle, accepts](const http::ApiRequest& req) {
      auto parsed = ParseBranchRequest(req.body);
      if (!parsed.ok()) return http::JsonError(400, "invalid", parsed.status().message());
      if (std::find(accepts.begin(), accepts.end(), parsed->op) == accepts.end()) {
        std::string names;
        for (const auto& a : accepts) names += (names.empty() ? "\"" : " or \"") + a + "\"";
        return http::JsonError(
            400, "invalid", "must be " + names + " at " + path + ", not " + JsonQuote(parsed->op),
            "op");
      }
      if (auto injected = faults.Intercept(op)) return ToResponse(*injected);
      OpReply reply = handle(*parsed);
      log.Info(op + " answered", {{"gid", parsed->gid},
                                  {"branch_id", parsed->branch_id},
                                  {"status", std::to_string(reply.status)},
                                  {"result", reply.message}});
      return ToResponse(reply);
    });
  };
  op_route("/2pc/prepare", protocol::kPrepare,
           [&](const BranchRequest& r) { return twopc.Prepare(r, spec.twopc_prepare); });
  op_route("/2pc/commit", protocol::kCommit,
           [&](const BranchRequest& r) { return twopc.Commit(r); });
  op_route("/2pc/abort", protocol::kAbort, [&](const BranchRequest& r) { return twopc.Abort(r); });
  // A barrier-guarded op: the barrier rows and the business change in one local transaction.
  auto barrier_op = [&pool](const BarrierChange& change,
                            const ParticipantSpec::SagaRoute* route = nullptr) {
    auto output = route != nullptr ? route->output : nullptr;
    return [&pool, change, output](const BranchRequest& r) {
      auto reply = pool.Run<OpReply>([&](pqxx::connection& c) -> Result<OpReply> {
        pqxx::work tx(c);
        // Waiting on another op's lock holds a pooled connection; answer "try again" instead.
        tx.exec("SET LOCAL lock_timeout = '250ms'");
        OpReply out = Barrier::Run(tx, r, [&](pqxx::work& w) { return change(w, r); });
        if (out.status == 200 && output && r.op == protocol::kAction)
          out.output_json = output(tx, r);
        if (out.status == 200) {
          tx.commit();
        } else {
          tx.abort();
        }
        return out;
      });
      return reply.ok() ? *reply : OpReply{503, reply.status().message()};
    };
  };
  if (spec.tcc_try) {
    op_route("/tcc/try", protocol::kTry, barrier_op(spec.tcc_try));
    op_route("/tcc/confirm", protocol::kConfirm, barrier_op(spec.tcc_confirm));
    op_route("/tcc/cancel", protocol::kCancel, barrier_op(spec.tcc_cancel));
  }
  for (const auto& route : spec.saga_routes) {
    op_route(route.path, route.path.substr(1), barrier_op(route.change, &route),
             {protocol::kAction, protocol::kCompensate});
  }
  // Transactional-message check-back: treatyd asks whether a gid's local transaction committed.
  op_route("/msg/query", protocol::kQuery, [&pool](const BranchRequest& r) {
    auto reply = pool.Run<OpReply>([&](pqxx::connection& c) -> Result<OpReply> {
      pqxx::work tx(c);
      tx.exec("SET LOCAL lock_timeout = '1s'");
      OpReply out = MsgParticipant::Query(tx, r.gid);
      tx.commit();
      return out;
    });
    return reply.ok() ? *reply : OpReply{503, reply.status().message()};
  });
  if (spec.extra_routes) spec.extra_routes(router, pool, config);

  auto server = ServeAndAnnounce(config.listen, router, args.address_file, log);
  if (!server.ok()) return kExitServeFailed;
  g_self_url =
      config.public_url.empty() ? "http://" + (*server)->address().ToString() : config.public_url;
  PreparedSweep sweep(twopc, config, log);
  retention = std::make_unique<KitRetention>(pool, config, log);
  retention_ready = retention.get();
  std::unique_ptr<EventConsumer> consumer;
  if (spec.on_event && !config.kafka_bootstrap_servers.empty()) {
    // The fault switch's "event" op fails (or holds) each apply, for the tests of a consumer
    // whose applies fail.
    EventHandler on_event = [&faults, handle = spec.on_event](
                                pqxx::work& tx, const std::string& type,
                                const Poco::JSON::Object& payload) -> Status {
      if (auto injected = faults.Intercept("event")) return Status::Unavailable(injected->message);
      return handle(tx, type, payload);
    };
    consumer =
        std::make_unique<EventConsumer>(config.kafka_bootstrap_servers, config.events_topic,
                                        config.kafka_group.empty() ? spec.name : config.kafka_group,
                                        pool, std::move(on_event), log);
  }
  log.Info("stop requested", {{"signal", WaitForStopSignal()}});
  (*server)->Stop();
  retention_ready = nullptr;
  return 0;
}

}  // namespace

const std::string& EventsTopic() { return g_events_topic; }
const std::string& SelfUrl() { return g_self_url; }

Result<std::pair<int, std::string>> CallCoordinator(const std::string& method,
                                                    const std::string& path,
                                                    const std::string& body) {
  auto r = http::HttpCall(
      method, g_coordinator_url + path, body,
      http::CallOptions{.timeout = std::chrono::seconds(10)}.WithBearer(g_coordinator_token));
  if (!r.ok()) return r.status();
  return std::pair<int, std::string>{r->status, r->body};
}

int RunParticipant(int argc, char** argv, const ParticipantSpec& spec) {
  return RunServiceMain(
      argc, argv,
      ServiceMainSpec{
          .name = spec.name,
          .description = spec.name + ": a Treaty demo participant on PostgreSQL.",
          .check_config =
              [&](const std::string& path) {
                auto c = LoadParticipantConfig(path, spec.env_prefix, ProcessEnvironment());
                return c.ok() ? Status::Ok() : c.status();
              },
          .serve =
              [&](const ServeArgs& args) {
                auto c =
                    LoadParticipantConfig(args.config_path, spec.env_prefix, ProcessEnvironment());
                if (!c.ok()) {
                  std::cerr << c.status().message() << "\n";
                  return kExitBadConfig;
                }
                return Serve(spec, *c, args);
              },
      });
}

}  // namespace treaty::participant
