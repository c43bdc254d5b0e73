// inventory-svc: a demo participant that keeps stock per SKU in its own PostgreSQL database.
//
//   stock(sku, available, reserved, sold): available + reserved + sold never changes for a SKU.
//   2PC prepare {"sku", "qty"}: moves qty from available to sold in the prepared transaction;
//   409 when the SKU is unknown or short.
//   TCC try {"sku", "qty"}: freezes qty (available -> reserved); confirm: reserved -> sold;
//   cancel: reserved -> available. Each through the barrier.
//   Saga /saga/reserve {"sku", "qty"}: available -> sold; /saga/release: back. Barrier-guarded.
//   Consumes order events (kafka.bootstrap_servers set) through the inbox into sales(sku, placed,
//   cancelled): each event counted once however often Kafka delivers it.
//   GET /stock/{sku}: the row. POST /admin/stock {"sku", "available"}: sets a SKU's stock.

#include <Poco/Exception.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include "participants/kit/participant_app.h"

namespace treaty::participant {
namespace {

OpReply ReserveAndSell(pqxx::nontransaction& sql, const BranchRequest& r) {
  auto sku = PayloadString(*r.payload, "sku");
  auto qty = PayloadInt(*r.payload, "qty");
  if (!sku || !qty || *qty <= 0) {
    return OpReply{409, "payload needs \"sku\" (string) and \"qty\" (positive integer)"};
  }
  pqxx::result sold = sql.exec_params(
      "UPDATE stock SET available = available - $2, sold = sold + $2 "
      "WHERE sku = $1 AND available >= $2 RETURNING available",
      *sku, *qty);
  if (!sold.empty()) return OpReply{200, "reserved"};
  pqxx::result have = sql.exec_params("SELECT available FROM stock WHERE sku = $1", *sku);
  if (have.empty()) return OpReply{409, "unknown sku " + *sku};
  return OpReply{409, "out of stock: sku " + *sku + " has " + have[0][0].as<std::string>() +
                          ", asked " + std::to_string(*qty)};
}

// TCC: try freezes stock (available -> reserved), confirm sells it (reserved -> sold), cancel
// releases it (reserved -> available).
std::optional<std::pair<std::string, int64_t>> SkuQty(const BranchRequest& r) {
  auto sku = PayloadString(*r.payload, "sku");
  auto qty = PayloadInt(*r.payload, "qty");
  if (!sku || !qty || *qty <= 0) return std::nullopt;
  return std::pair{*sku, *qty};
}

const OpReply kBadPayload{409, "payload needs \"sku\" (string) and \"qty\" (positive integer)"};

OpReply TccTry(pqxx::work& tx, const BranchRequest& r) {
  auto p = SkuQty(r);
  if (!p) return kBadPayload;
  pqxx::result frozen = tx.exec_params(
      "UPDATE stock SET available = available - $2, reserved = reserved + $2 "
      "WHERE sku = $1 AND available >= $2 RETURNING 1",
      p->first, p->second);
  if (!frozen.empty()) return OpReply{200, "reserved"};
  pqxx::result have = tx.exec_params("SELECT available FROM stock WHERE sku = $1", p->first);
  if (have.empty()) return OpReply{409, "unknown sku " + p->first};
  return OpReply{409, "out of stock: sku " + p->first + " has " + have[0][0].as<std::string>() +
                          ", asked " + std::to_string(p->second)};
}

OpReply TccConfirm(pqxx::work& tx, const BranchRequest& r) {
  auto p = SkuQty(r);
  if (!p) return kBadPayload;
  tx.exec_params("UPDATE stock SET reserved = reserved - $2, sold = sold + $2 WHERE sku = $1",
                 p->first, p->second);
  return OpReply{200, "sold"};
}

OpReply TccCancel(pqxx::work& tx, const BranchRequest& r) {
  auto p = SkuQty(r);
  if (!p) return kBadPayload;
  tx.exec_params(
      "UPDATE stock SET reserved = reserved - $2, available = available + $2 WHERE sku = $1",
      p->first, p->second);
  return OpReply{200, "released"};
}

// Saga: reserve sells stock at once (available -> sold); release gives it back.
OpReply SagaReserve(pqxx::work& tx, const BranchRequest& r) {
  auto p = SkuQty(r);
  if (!p) return kBadPayload;
  pqxx::result sold = tx.exec_params(
      "UPDATE stock SET available = available - $2, sold = sold + $2 "
      "WHERE sku = $1 AND available >= $2 RETURNING 1",
      p->first, p->second);
  if (!sold.empty()) return OpReply{200, "reserved"};
  pqxx::result have = tx.exec_params("SELECT available FROM stock WHERE sku = $1", p->first);
  if (have.empty()) return OpReply{409, "unknown sku " + p->first};
  return OpReply{409, "out of stock: sku " + p->first + " has " + have[0][0].as<std::string>() +
                          ", asked " + std::to_string(p->second)};
}

OpReply SagaRelease(pqxx::work& tx, const BranchRequest& r) {
  auto p = SkuQty(r);
  if (!p) return kBadPayload;
  tx.exec_params("UPDATE stock SET sold = sold - $2, available = available + $2 WHERE sku = $1",
                 p->first, p->second);
  return OpReply{200, "released"};
}

// Order events from Kafka, applied once each through the inbox: a sales count per SKU.
Status OnOrderEvent(pqxx::work& tx, const std::string& type, const Poco::JSON::Object& payload) {
  std::string sku = payload.optValue<std::string>("sku", "");
  int64_t qty = payload.optValue<int64_t>("qty", 0);
  if (sku.empty() || qty <= 0) return Status::Ok();  // not an order event: nothing to count
  const char* column = type == "OrderPlaced"      ? "placed"
                       : type == "OrderCancelled" ? "cancelled"
                                                  : nullptr;
  if (column == nullptr) return Status::Ok();
  tx.exec_params(std::string("INSERT INTO sales (sku, ") + column +
                     ") VALUES ($1, $2) "
                     "ON CONFLICT (sku) DO UPDATE SET " +
                     column + " = sales." + column + " + $2",
                 sku, qty);
  return Status::Ok();
}

void Routes(http::Router& router, pg::PgPool& pool, const ParticipantConfig&) {
  router.Add("GET", "/stock/{sku}", [&pool](const http::ApiRequest& req) {
    std::string sku = req.path_params.at("sku");
    auto row = pool.Run<std::string>([&](pqxx::connection& c) -> Result<std::string> {
      pqxx::read_transaction t(c);
      pqxx::result r = t.exec_params(
          "SELECT json_build_object('sku', sku, 'available', available, 'reserved', reserved, "
          "'sold', sold)::text FROM stock WHERE sku = $1",
          sku);
      if (r.empty()) return Status::NotFound("unknown sku " + sku);
      return r[0][0].as<std::string>();
    });
    if (!row.ok()) {
      return http::JsonError(row.status().code() == Status::Code::kNotFound ? 404 : 503, "stock",
                             row.status().message());
    }
    return http::ApiResponse{200, "application/json", *row};
  });
  router.Add("POST", "/admin/stock", [&pool](const http::ApiRequest& req) {
    std::string sku;
    int64_t available = 0;
    try {
      Poco::JSON::Parser parser;
      auto o = parser.parse(req.body).extract<Poco::JSON::Object::Ptr>();
      sku = o->optValue<std::string>("sku", "");
      available = o->optValue<int64_t>("available", -1);
    } catch (const Poco::Exception& e) {
      return http::JsonError(400, "invalid_json", e.message());
    }
    if (sku.empty()) return http::JsonError(400, "invalid", "is required", "sku");
    if (available < 0) return http::JsonError(400, "invalid", "must be >= 0", "available");
    auto done = pool.Run<bool>([&](pqxx::connection& c) -> Result<bool> {
      pqxx::work w(c);
      w.exec_params(
          "INSERT INTO stock (sku, available) VALUES ($1, $2) ON CONFLICT (sku) DO UPDATE "
          "SET available = EXCLUDED.available, reserved = 0, sold = 0",
          sku, available);
      w.commit();
      return true;
    });
    if (!done.ok()) return http::JsonError(503, "stock", done.status().message());
    return http::ApiResponse{200, "application/json", "{\"sku\":\"" + sku + "\"}"};
  });
}

}  // namespace
}  // namespace treaty::participant

int main(int argc, char** argv) {
  using namespace treaty::participant;
  return RunParticipant(
      argc, argv,
      ParticipantSpec{
          .name = "inventory-svc",
          .env_prefix = "TREATY_INVENTORY_SVC_",
          .schema_sql = "CREATE TABLE IF NOT EXISTS stock ("
                        " sku text PRIMARY KEY,"
                        " available integer NOT NULL CHECK (available >= 0),"
                        " reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),"
                        " sold integer NOT NULL DEFAULT 0 CHECK (sold >= 0));"
                        "CREATE TABLE IF NOT EXISTS sales ("
                        " sku text PRIMARY KEY,"
                        " placed bigint NOT NULL DEFAULT 0, cancelled bigint NOT NULL DEFAULT 0)",
          .twopc_prepare = ReserveAndSell,
          .tcc_try = TccTry,
          .tcc_confirm = TccConfirm,
          .tcc_cancel = TccCancel,
          .saga_routes = {{"/saga/reserve", SagaReserve}, {"/saga/release", SagaRelease}},
          .on_event = OnOrderEvent,
          .extra_routes = Routes,
      });
}
