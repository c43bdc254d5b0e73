#pragma once

// The chaos run's checker: given the history and what the databases and the topic hold once
// every fault is healed and the system is quiet, lists every violation of the promise
// (docs/reliability.md names the six invariants). Pure: no process, no database; the run
// gathers the Observations, tests build them by hand.

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "integration-tests/chaos/history.h"

namespace treaty::chaos {

// What the run found at the end, after healing and waiting for quiescence.
struct Observations {
  // treatyd's store: the status of every transaction it holds.
  std::map<std::string, std::string> final_status;
  // inventory-svc: each SKU's stock at the start (all available) and at the end.
  struct Stock {
    int64_t available = 0;
    int64_t reserved = 0;
    int64_t sold = 0;
  };
  std::map<std::string, int64_t> initial_available;
  std::map<std::string, Stock> stock;
  // inventory-svc's sales per SKU, counted from consumed order events through its inbox.
  struct Sales {
    int64_t placed = 0;
    int64_t cancelled = 0;
  };
  std::map<std::string, Sales> sales;
  std::set<std::string> inbox;  // event ids inventory-svc's inbox applied
  // order-svc's rows.
  struct Row {
    std::string gid;
    std::string branch_id;
    std::string status;
  };
  std::vector<Row> orders;
  std::vector<Row> payments;
  // Prepared transactions left, per database.
  std::map<std::string, int> prepared;
  // order-svc's outbox, in id order.
  struct OutboxRow {
    int64_t id = 0;
    std::string event_id;
    std::string aggregate;
    std::string event_type;
    std::string status;
  };
  std::vector<OutboxRow> outbox;
  // The events topic read from the start, in order (per partition order is what counts: one
  // aggregate's events share a key, hence a partition).
  struct Message {
    std::string key;
    std::string event_id;    // the treaty-event-id header
    std::string message_id;  // the treaty-message-id header (transactional messages)
    std::string event_type;  // the treaty-event-type header
    std::string sku;         // from the JSON payload
    int64_t qty = 0;
  };
  std::vector<Message> topic;
  // Empty when the topic was read whole; otherwise why not (e.g. fewer messages than expected).
  std::string topic_error;
};

struct Violation {
  int invariant = 0;    // 1..6, as docs/reliability.md numbers them
  std::string subject;  // the gid, SKU, event id or database concerned
  std::string detail;
};

std::string ToString(const Violation& v);

// Every violation, invariant by invariant; empty when the run kept the promise.
std::vector<Violation> Check(const std::vector<HistoryEvent>& history, const Observations& seen);

// What a branch of each workload mode is called at order-svc and inventory-svc, and whether the
// mode touches stock; shared by the workload (which builds requests) and the checker.
struct ModeShape {
  std::string order_branch;    // the branch whose op writes the order row
  std::string payment_branch;  // sagas: the step that records the payment; else empty
  bool touches_stock = true;   // msg orders do not
  bool compensates = false;    // TCC and sagas: an abort must undo applied forward ops
};
ModeShape ShapeOf(const std::string& mode);

}  // namespace treaty::chaos
