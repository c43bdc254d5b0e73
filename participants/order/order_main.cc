// order-svc: a demo participant that records orders in its own PostgreSQL database.
//
//   orders(gid, branch_id, sku, qty, status): one row per order, written by the transaction.
//   2PC prepare {"sku", "qty"}: inserts the order as 'placed' in the prepared transaction.
//   TCC try {"sku", "qty"}: inserts it as 'pending'; confirm: 'placed'; cancel: 'cancelled'.
//   Saga /saga/create (placed) and /saga/cancel; /saga/pay {"card", "amount"} (409 for card
//   "declined") and /saga/refund. Barrier-guarded.
//   Every placement and cancellation writes an OrderPlaced / OrderCancelled event through the
//   outbox (topic events.topic), in the same local transaction; treaty-relay publishes them.
//   POST /msg/orders {"gid", "sku", "qty"}: a transactional-message order (see MsgOrder).
//   GET /orders?gid=G: the orders of a transaction.

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <signal.h>

#include <sstream>

#include "mqtx/msg_participant.h"
#include "participants/kit/participant_app.h"

namespace treaty::participant {
namespace {

// The order's event, written through the outbox in the same local transaction as the change.
// The aggregate is the order (gid and branch); its events keep their order on the topic.
void OrderEvent(pqxx::transaction_base& tx, const BranchRequest& r, const std::string& type,
                const std::string& sku, int64_t qty, bool notify = true) {
  Poco::JSON::Object payload(Poco::JSON_PRESERVE_KEY_ORDER);
  payload.set("order", r.gid + ":" + r.branch_id);
  payload.set("sku", sku);
  payload.set("qty", qty);
  std::ostringstream text;
  payload.stringify(text);
  Outbox::Append(tx,
                 OutboxEvent{.event_id = r.gid + ":" + r.branch_id + ":" + type,
                             .aggregate_type = "order",
                             .aggregate_id = r.gid + ":" + r.branch_id,
                             .event_type = type,
                             .topic = EventsTopic(),
                             .payload_json = text.str()},
                 notify);
}

// Marks the order and, when there was one to change, writes its OrderCancelled event.
OpReply CancelOrder(pqxx::work& tx, const BranchRequest& r) {
  pqxx::result changed = tx.exec_params(
      "UPDATE orders SET status = 'cancelled' WHERE gid = $1 AND branch_id = $2 "
      "AND status <> 'cancelled' RETURNING sku, qty",
      r.gid, r.branch_id);
  if (!changed.empty()) {
    OrderEvent(tx, r, "OrderCancelled", changed[0][0].as<std::string>(),
               changed[0][1].as<int64_t>());
  }
  return OpReply{200, "cancelled"};
}

OpReply PlaceOrder(pqxx::nontransaction& sql, const BranchRequest& r) {
  auto sku = PayloadString(*r.payload, "sku");
  auto qty = PayloadInt(*r.payload, "qty");
  if (!sku || !qty || *qty <= 0) {
    return OpReply{409, "payload needs \"sku\" (string) and \"qty\" (positive integer)"};
  }
  sql.exec_params(
      "INSERT INTO orders (gid, branch_id, sku, qty, status) VALUES ($1, $2, $3, $4, 'placed')",
      r.gid, r.branch_id, *sku, *qty);
  // Inside the transaction that will be PREPAREd: published only if it commits. No NOTIFY there
  // (PostgreSQL forbids it in a prepared transaction); the relay's poll finds it.
  OrderEvent(sql, r, "OrderPlaced", *sku, *qty, /*notify=*/false);
  return OpReply{200, "placed"};
}

// TCC: try records the order as pending, confirm places it, cancel cancels it.
OpReply TccTry(pqxx::work& tx, const BranchRequest& r) {
  auto sku = PayloadString(*r.payload, "sku");
  auto qty = PayloadInt(*r.payload, "qty");
  if (!sku || !qty || *qty <= 0) {
    return OpReply{409, "payload needs \"sku\" (string) and \"qty\" (positive integer)"};
  }
  tx.exec_params(
      "INSERT INTO orders (gid, branch_id, sku, qty, status) VALUES ($1, $2, $3, $4, 'pending')",
      r.gid, r.branch_id, *sku, *qty);
  return OpReply{200, "pending"};
}

OpReply ConfirmOrder(pqxx::work& tx, const BranchRequest& r) {
  pqxx::result placed = tx.exec_params(
      "UPDATE orders SET status = 'placed' WHERE gid = $1 AND branch_id = $2 RETURNING sku, qty",
      r.gid, r.branch_id);
  if (!placed.empty()) {
    OrderEvent(tx, r, "OrderPlaced", placed[0][0].as<std::string>(), placed[0][1].as<int64_t>());
  }
  return OpReply{200, "placed"};
}

// Saga: create places the order at once, cancel cancels it; pay records a payment (refused
// with 409 when the payload's card is "declined"), refund marks it refunded.
OpReply SagaCreate(pqxx::work& tx, const BranchRequest& r) {
  auto sku = PayloadString(*r.payload, "sku");
  auto qty = PayloadInt(*r.payload, "qty");
  if (!sku || !qty || *qty <= 0) {
    return OpReply{409, "payload needs \"sku\" (string) and \"qty\" (positive integer)"};
  }
  tx.exec_params(
      "INSERT INTO orders (gid, branch_id, sku, qty, status) VALUES ($1, $2, $3, $4, 'placed')",
      r.gid, r.branch_id, *sku, *qty);
  OrderEvent(tx, r, "OrderPlaced", *sku, *qty);
  return OpReply{200, "placed"};
}

// The create-order step's output: {"order_id": n}, the same for a repeated action.
std::string CreatedOrder(pqxx::work& tx, const BranchRequest& r) {
  pqxx::result row =
      tx.exec_params("SELECT id FROM orders WHERE gid = $1 AND branch_id = $2", r.gid, r.branch_id);
  if (row.empty()) return "";
  return "{\"order_id\":" + row[0][0].as<std::string>() + "}";
}

// "order_id" (optional): the order paid for, e.g. ${steps.create-order.output.order_id}.
OpReply SagaPay(pqxx::work& tx, const BranchRequest& r) {
  std::string card = PayloadString(*r.payload, "card").value_or("");
  if (card == "declined") return OpReply{409, "card declined"};
  int64_t amount = PayloadInt(*r.payload, "amount").value_or(0);
  std::optional<int64_t> order_id = PayloadInt(*r.payload, "order_id");
  tx.exec_params(
      "INSERT INTO payments (gid, branch_id, amount, status, order_id) "
      "VALUES ($1, $2, $3, 'paid', $4)",
      r.gid, r.branch_id, amount, order_id);
  return OpReply{200, "paid"};
}

OpReply SagaRefund(pqxx::work& tx, const BranchRequest& r) {
  tx.exec_params("UPDATE payments SET status = 'refunded' WHERE gid = $1 AND branch_id = $2", r.gid,
                 r.branch_id);
  return OpReply{200, "refunded"};
}

// A msg order: the half message OrderPlaced at treatyd, the order row and the commit mark in one
// local transaction, then submit. POST /msg/orders {"gid", "sku", "qty", "crash"?, "resume"?}:
// "crash": "before_local_commit" | "after_local_commit" kills this process there (a test switch);
// "resume": true skips the prepare (a late local commit of an earlier attempt).
http::ApiResponse MsgOrder(pg::PgPool& pool, const http::ApiRequest& req) {
  Poco::JSON::Object::Ptr in;
  try {
    Poco::JSON::Parser parser;
    in = parser.parse(req.body).extract<Poco::JSON::Object::Ptr>();
  } catch (const std::exception& e) {
    return http::JsonError(400, "invalid_json", e.what());
  }
  std::string gid = in->optValue<std::string>("gid", "");
  std::string sku = in->optValue<std::string>("sku", "");
  int64_t qty = in->optValue<int64_t>("qty", 0);
  std::string crash = in->optValue<std::string>("crash", "");
  if (gid.empty()) return http::JsonError(400, "invalid", "is required", "gid");
  if (sku.empty() || qty <= 0)
    return http::JsonError(400, "invalid", "sku and qty are required", "sku");
  std::string order = gid + ":order";
  if (!in->optValue<bool>("resume", false)) {
    std::string prepare = R"({"gid":")" + gid + R"(","mode":"msg","query":")" + SelfUrl() +
                          R"(/msg/query",)" + R"("messages":[{"topic":")" + EventsTopic() +
                          R"(","key":")" + order + R"(","payload":{"order":")" + order +
                          R"(","sku":")" + sku + R"(","qty":)" + std::to_string(qty) +
                          R"(},"headers":{"treaty-event-type":"OrderPlaced"}}]})";
    auto prepared = CallCoordinator("POST", "/v1/transactions", prepare);
    if (!prepared.ok()) return http::JsonError(503, "unavailable", prepared.status().message());
    if (prepared->first != 201) {
      return http::ApiResponse{prepared->first, "application/json", prepared->second};
    }
  }
  auto local = pool.Run<bool>([&](pqxx::connection& c) -> Result<bool> {
    pqxx::work tx(c);
    if (!MsgParticipant::CommitMark(tx, gid)) return false;
    tx.exec_params(
        "INSERT INTO orders (gid, branch_id, sku, qty, status) VALUES ($1, 'order', $2, $3, "
        "'placed')",
        gid, sku, qty);
    if (crash == "before_local_commit") ::raise(SIGKILL);
    tx.commit();
    return true;
  });
  if (!local.ok()) return http::JsonError(503, "unavailable", local.status().message());
  if (!*local) {
    return http::JsonError(409, "too_late",
                           "the check-back already recorded this transaction as rolled back");
  }
  if (crash == "after_local_commit") ::raise(SIGKILL);
  auto submitted =
      CallCoordinator("POST", "/v1/transactions/" + gid + "/submit", R"({"wait":true})");
  if (!submitted.ok()) return http::JsonError(503, "unavailable", submitted.status().message());
  return http::ApiResponse{submitted->first, "application/json", submitted->second};
}

void Routes(http::Router& router, pg::PgPool& pool, const ParticipantConfig&) {
  router.Add("POST", "/msg/orders",
             [&pool](const http::ApiRequest& req) { return MsgOrder(pool, req); });
  router.Add("GET", "/orders", [&pool](const http::ApiRequest& req) {
    auto it = req.query.find("gid");
    if (it == req.query.end()) return http::JsonError(400, "invalid", "is required", "gid");
    auto rows = pool.Run<std::string>([&](pqxx::connection& c) -> Result<std::string> {
      pqxx::read_transaction t(c);
      pqxx::result r = t.exec_params(
          "SELECT coalesce(json_agg(json_build_object('gid', gid, 'branch_id', branch_id, "
          "'sku', sku, 'qty', qty, 'status', status) ORDER BY id), '[]')::text "
          "FROM orders WHERE gid = $1",
          it->second);
      return r[0][0].as<std::string>();
    });
    if (!rows.ok()) return http::JsonError(503, "orders", rows.status().message());
    return http::ApiResponse{200, "application/json", "{\"orders\":" + *rows + "}"};
  });
}

}  // namespace
}  // namespace treaty::participant

int main(int argc, char** argv) {
  using namespace treaty::participant;
  return RunParticipant(
      argc, argv,
      ParticipantSpec{
          .name = "order-svc",
          .env_prefix = "TREATY_ORDER_SVC_",
          .schema_sql =
              "CREATE TABLE IF NOT EXISTS orders ("
              " id bigserial PRIMARY KEY,"
              " gid text NOT NULL, branch_id text NOT NULL,"
              " sku text NOT NULL, qty integer NOT NULL CHECK (qty > 0),"
              " status text NOT NULL CHECK (status IN ('pending', 'placed', 'cancelled')),"
              " created_at timestamptz NOT NULL DEFAULT now(),"
              " UNIQUE (gid, branch_id));"
              "CREATE TABLE IF NOT EXISTS payments ("
              " gid text NOT NULL, branch_id text NOT NULL, amount bigint NOT NULL,"
              " status text NOT NULL CHECK (status IN ('paid', 'refunded')),"
              " PRIMARY KEY (gid, branch_id));"
              // The order a saga's payment is for: the create-order step's output (sagas.md).
              "ALTER TABLE payments ADD COLUMN IF NOT EXISTS order_id bigint",
          .twopc_prepare = PlaceOrder,
          .tcc_try = TccTry,
          .tcc_confirm = ConfirmOrder,
          .tcc_cancel = CancelOrder,
          .saga_routes = {{"/saga/create", SagaCreate, CreatedOrder},
                          {"/saga/cancel", CancelOrder},
                          {"/saga/pay", SagaPay},
                          {"/saga/refund", SagaRefund}},
          .extra_routes = Routes,
      });
}
