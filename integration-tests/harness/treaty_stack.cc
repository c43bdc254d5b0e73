#include "integration-tests/harness/treaty_stack.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include "coordinator/store/migrations.h"
#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"

namespace treaty::harness {

std::string TestTreatydConfig(const PgCluster& pg, const std::string& extra_yaml,
                              const std::string& retry, const std::string& lease,
                              const std::string& branch_call,
                              const std::vector<std::string>& extra_shards,
                              const std::string& store_url) {
  const std::string first = store_url.empty() ? pg.Url("treaty") : store_url;
  std::string store = "url: \"" + first + "\"";
  if (!extra_shards.empty()) {
    store = "shards: [\"" + first + "\"";
    for (const std::string& url : extra_shards) store += ", \"" + url + "\"";
    store += "]";
  }
  return "listen: 127.0.0.1:0\n"
         "node_id: test-node\n"
         "store: { " +
         store +
         ", connect_timeout: 2s, pool_size: 16 }\n"
         "retry: " +
         retry +
         "\n"
         "timeouts: { branch_call: " +
         branch_call +
         ", prepare: 20s }\n"
         "scheduler: { workers: 16, poll_interval: 50ms, lease: " +
         lease + " }\n" + extra_yaml;
}

namespace {

std::string ParticipantConfig(const std::string& db_url, const std::string& coordinator,
                              const StackOptions& o, uint16_t port, const std::string& kafka) {
  return "listen: 127.0.0.1:" + std::to_string(port) + "\n" +
         (kafka.empty() ? std::string() : "kafka: { bootstrap_servers: \"" + kafka + "\" }\n") +
         "database: { url: \"" + db_url +
         "\", pool_size: 16 }\n"
         "coordinator: { url: \"" +
         coordinator + "\"" +
         (o.client_token.empty() ? std::string() : ", token: \"" + o.client_token + "\"") +
         " }\n"
         "sweep: { interval: " +
         o.sweep_interval + ", older_than: " + o.sweep_older_than + " }\n" +
         o.participant_extra_yaml;
}

}  // namespace

bool BecomesReady(Service& treatyd) {
  return WaitUntil(
      [&] {
        auto r = HttpCall("GET", treatyd.base_url() + "/readyz");
        return r.ok() && r->status == 200;
      },
      std::chrono::seconds(30));
}

Result<std::unique_ptr<TreatyStack>> TreatyStack::Start(StackOptions options) {
  std::unique_ptr<TreatyStack> s(new TreatyStack());
  auto pg = PgCluster::Start(
      PgClusterOptions{.durable = options.durable_store,
                       .logical_decoding = options.with_broker && options.relay_mode == "wal"});
  if (!pg.ok()) return pg.status();
  s->pg_ = std::move(*pg);
  for (const char* db : {"treaty", "orders", "inventory"}) {
    Status st = s->pg_->CreateDatabase(db);
    if (!st.ok()) return st;
  }
  if (options.with_broker) {
    auto b = DevBroker::Start();
    if (!b.ok()) return b.status();
    s->broker_ = std::move(*b);
  }
  std::string extra = options.treatyd_extra_yaml;
  if (s->broker_) extra += "kafka: { bootstrap_servers: \"" + s->broker_->bootstrap() + "\" }\n";
  uint16_t order_port = 0, inventory_port = 0;
  if (!options.saga_files.empty()) {
    auto a = FreePort();
    auto b = FreePort();
    if (!a.ok() || !b.ok()) return Status::Unavailable("no free port");
    order_port = *a;
    inventory_port = *b;
    extra += "sagas:\n";
    for (const std::string& f : options.saga_files) extra += "  - \"" + f + "\"\n";
    s->saga_env_ = {
        {"TREATY_DEMO_ORDER_URL", "http://127.0.0.1:" + std::to_string(order_port)},
        {"TREATY_DEMO_INVENTORY_URL", "http://127.0.0.1:" + std::to_string(inventory_port)}};
    options.treatyd_env.insert(options.treatyd_env.end(), s->saga_env_.begin(), s->saga_env_.end());
  }
  s->client_token_ = options.client_token;
  auto t = Service::Start(ServiceSpec{
      .name = "treatyd",
      .binary = kTreatydPath,
      .config_yaml =
          TestTreatydConfig(*s->pg_, extra, options.retry, options.lease, options.branch_call,
                            options.extra_store_shards, options.store_url),
      .extra_args = {},
      .env = options.treatyd_env});
  if (!t.ok()) return t.status();
  s->treatyd_ = std::move(*t);
  if (!BecomesReady(*s->treatyd_)) return Status::DeadlineExceeded("treatyd not ready in 30s");
  const std::string orders_url =
      options.orders_db_url.empty() ? s->pg_->Url("orders") : options.orders_db_url;
  for (auto [name, db_url, binary, slot, port] :
       {std::tuple{"order-svc", orders_url, kOrderSvcPath, &s->orders_, order_port},
        std::tuple{"inventory-svc", s->pg_->Url("inventory"), kInventorySvcPath, &s->inventory_,
                   inventory_port}}) {
    auto p = Service::Start(ServiceSpec{
        .name = name,
        .binary = binary,
        .config_yaml = ParticipantConfig(
            db_url, s->treatyd_->base_url(), options, port,
            // inventory-svc consumes order events when there is a broker.
            s->broker_ && std::string(name) == "inventory-svc" ? s->broker_->bootstrap() : ""),
    });
    if (!p.ok()) return p.status();
    *slot = std::move(*p);
  }
  if (s->broker_) {
    // order-svc created its outbox table at start; the relay publishes it.
    auto relay = Service::Start(ServiceSpec{.name = "treaty-relay",
                                            .binary = kRelayPath,
                                            .config_yaml = "listen: 127.0.0.1:0\n"
                                                           "database: { url: \"" +
                                                           orders_url +
                                                           "\" }\n"
                                                           "kafka: { bootstrap_servers: \"" +
                                                           s->broker_->bootstrap() +
                                                           "\" }\n"
                                                           "poll_interval: 200ms\n"
                                                           "mode: " +
                                                           options.relay_mode + "\n"});
    if (!relay.ok()) return relay.status();
    s->relay_ = std::move(*relay);
  }
  return s;
}

std::vector<std::pair<std::string, std::string>> ClockSkewEnv(const std::string& offset) {
  return {{"LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"},
          {"FAKETIME", offset},
          {"FAKETIME_DONT_FAKE_MONOTONIC", "1"}};
}

std::string PlaceOrderSagaFile() {
  return std::string(kSourceDir) + "/config/sagas/place-order.yaml";
}

Status TreatyStack::RestartTreatyd(std::vector<std::pair<std::string, std::string>> env) {
  env.insert(env.end(), saga_env_.begin(), saga_env_.end());
  Status s = treatyd_->Restart(std::move(env));
  if (!s.ok()) return s;
  if (!BecomesReady(*treatyd_)) return Status::DeadlineExceeded("treatyd not ready in 30s");
  return Status::Ok();
}

Status TreatyStack::RecreateStoreAt(int version) {
  std::string schema =
      "DROP SCHEMA treaty CASCADE; CREATE SCHEMA treaty; CREATE TABLE treaty.schema_migrations "
      "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL "
      "DEFAULT now());";
  for (const store::Migration& m : store::Migrations()) {
    if (m.version > version) break;
    schema += std::string(m.sql) +
              ";INSERT INTO treaty.schema_migrations (version, name) VALUES (" +
              std::to_string(m.version) + ", 'before the upgrade');";
  }
  return pg_->Execute("treaty", schema);
}

std::string TreatyStack::InventoryBranch(const std::string& id, const std::string& sku, int qty) {
  std::string base = inventory_->base_url();
  return R"({"id":")" + id + R"(","prepare":")" + base + R"(/2pc/prepare","commit":")" + base +
         R"(/2pc/commit","abort":")" + base + R"(/2pc/abort","payload":{"sku":")" + sku +
         R"(","qty":)" + std::to_string(qty) + "}}";
}

std::string TreatyStack::OrderBranch(const std::string& id, const std::string& sku, int qty) {
  std::string base = orders_->base_url();
  return R"({"id":")" + id + R"(","prepare":")" + base + R"(/2pc/prepare","commit":")" + base +
         R"(/2pc/commit","abort":")" + base + R"(/2pc/abort","payload":{"sku":")" + sku +
         R"(","qty":)" + std::to_string(qty) + "}}";
}

namespace {
std::string TccBranchOf(Service& svc, const std::string& id, const std::string& sku, int qty,
                        bool with_try) {
  std::string base = svc.base_url();
  return R"({"id":")" + id + "\"," +
         (with_try ? R"("try":")" + base + R"(/tcc/try",)" : std::string()) + R"("confirm":")" +
         base + R"(/tcc/confirm","cancel":")" + base + R"(/tcc/cancel","payload":{"sku":")" + sku +
         R"(","qty":)" + std::to_string(qty) + "}}";
}
}  // namespace

std::string TreatyStack::InventoryTccBranch(const std::string& id, const std::string& sku, int qty,
                                            bool with_try) {
  return TccBranchOf(*inventory_, id, sku, qty, with_try);
}

std::string TreatyStack::OrderTccBranch(const std::string& id, const std::string& sku, int qty,
                                        bool with_try) {
  return TccBranchOf(*orders_, id, sku, qty, with_try);
}

std::string TreatyStack::OpBody(const std::string& gid, const std::string& branch_id,
                                const std::string& op, const std::string& mode,
                                const std::string& sku, int qty) {
  return R"({"gid":")" + gid + R"(","branch_id":")" + branch_id + R"(","op":")" + op +
         R"(","mode":")" + mode + R"(","payload":{"sku":")" + sku + R"(","qty":)" +
         std::to_string(qty) + "}}";
}

Status TreatyStack::SetStock(const std::string& sku, int available) {
  return pg_->Execute("inventory", "INSERT INTO stock (sku, available) VALUES ('" + sku + "', " +
                                       std::to_string(available) +
                                       ") ON CONFLICT (sku) DO UPDATE SET available = "
                                       "EXCLUDED.available, reserved = 0, sold = 0");
}

Result<std::string> TreatyStack::Stock(const std::string& sku) {
  return pg_->QueryValue("inventory",
                         "SELECT available || '/' || reserved || '/' || sold FROM "
                         "stock WHERE sku = '" +
                             sku + "'");
}

Result<int> TreatyStack::OrderCount(const std::string& gid) {
  auto v = pg_->QueryValue(
      "orders", "SELECT count(*) FROM orders" + (gid.empty() ? "" : " WHERE gid = '" + gid + "'"));
  if (!v.ok()) return v.status();
  return std::stoi(*v);
}

Result<int> TreatyStack::PreparedCount(const std::string& database) {
  auto v = pg_->QueryValue(
      database, "SELECT count(*) FROM pg_prepared_xacts WHERE database = '" + database + "'");
  if (!v.ok()) return v.status();
  return std::stoi(*v);
}

std::string TreatyStack::StatusOf(const std::string& gid) {
  auto r = HttpCall("GET", treatyd_->base_url() + "/v1/transactions/" + gid, "",
                    http::CallOptions{}.WithBearer(client_token_));
  if (!r.ok() || r->status != 200) return "";
  try {
    Poco::JSON::Parser parser;
    return parser.parse(r->body).extract<Poco::JSON::Object::Ptr>()->optValue<std::string>("status",
                                                                                           "");
  } catch (const std::exception&) {
    return "";
  }
}

std::string TreatyStack::WaitFinal(const std::string& gid, Duration timeout) {
  std::string status;
  WaitUntil(
      [&] {
        status = StatusOf(gid);
        return status == "committed" || status == "aborted";
      },
      timeout, std::chrono::milliseconds(50));
  return status == "committed" || status == "aborted" ? status : "";
}

}  // namespace treaty::harness
