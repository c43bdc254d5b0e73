#include "integration-tests/chaos/checker.h"

#include <algorithm>

namespace treaty::chaos {
namespace {

bool IsFinal(const std::string& status) { return status == "committed" || status == "aborted"; }

// One transaction as the history tells it.
struct Tx {
  std::string mode;
  std::string sku;
  int64_t qty = 0;
  bool accepted = false;  // some request of it got a 2xx
  std::vector<const HistoryEvent*> answers;
};

std::map<std::string, Tx> Transactions(const std::vector<HistoryEvent>& history) {
  std::map<std::string, Tx> txs;
  for (const HistoryEvent& e : history) {
    if (e.gid.empty()) continue;
    Tx& tx = txs[e.gid];
    if (e.type == "invoke") {
      tx.mode = e.mode;
      tx.sku = e.sku;
      tx.qty = e.qty;
    } else if (e.type == "answer") {
      tx.answers.push_back(&e);
      if (e.http / 100 == 2 && e.action != "abort") tx.accepted = true;
    }
  }
  return txs;
}

class Report {
 public:
  void Add(int invariant, std::string subject, std::string detail) {
    out_.push_back(Violation{invariant, std::move(subject), std::move(detail)});
  }
  std::vector<Violation> Take() { return std::move(out_); }

 private:
  std::vector<Violation> out_;
};

std::string StatusIn(const Observations& seen, const std::string& gid) {
  auto it = seen.final_status.find(gid);
  return it == seen.final_status.end() ? "" : it->second;
}

// 1. Every transaction the store holds, and every one a client saw accepted, is final.
void CheckFinal(const std::map<std::string, Tx>& txs, const Observations& seen, Report& r) {
  for (const auto& [gid, status] : seen.final_status) {
    if (!txs.count(gid) && !IsFinal(status)) {
      r.Add(1, gid, "still " + status + " after the quiescence bound (not in the history)");
    }
  }
  for (const auto& [gid, tx] : txs) {
    std::string status = StatusIn(seen, gid);
    if (status.empty()) {
      if (tx.accepted) r.Add(1, gid, "accepted (" + tx.mode + ") but unknown to the store");
    } else if (!IsFinal(status)) {
      r.Add(1, gid, tx.mode + " still " + status + " after the quiescence bound");
    }
  }
}

// 2 and 3. The services' rows agree with each outcome; an aborted TCC or saga left nothing.
void CheckRows(const std::map<std::string, Tx>& txs, const Observations& seen, Report& r) {
  std::map<std::string, std::map<std::string, std::string>> orders, payments;
  for (const auto& row : seen.orders) orders[row.gid][row.branch_id] = row.status;
  for (const auto& row : seen.payments) payments[row.gid][row.branch_id] = row.status;
  for (const auto& [gid, tx] : txs) {
    if (tx.mode.empty()) continue;
    ModeShape shape = ShapeOf(tx.mode);
    std::string status = StatusIn(seen, gid);
    bool committed = status == "committed";
    int undo = shape.compensates ? 3 : 2;
    const auto& rows = orders[gid];
    const auto& paid = payments[gid];
    if (committed) {
      auto it = rows.find(shape.order_branch);
      if (it == rows.end() || it->second != "placed") {
        r.Add(2, gid,
              tx.mode + " committed but its order (" + shape.order_branch + ") is " +
                  (it == rows.end() ? "missing" : it->second));
      }
      if (!shape.payment_branch.empty()) {
        auto p = paid.find(shape.payment_branch);
        if (p == paid.end() || p->second != "paid") {
          r.Add(2, gid,
                tx.mode + " committed but its payment is " +
                    (p == paid.end() ? "missing" : p->second));
        }
      }
      continue;
    }
    std::string outcome = status.empty() ? "unknown to the store" : status;
    for (const auto& [branch, row_status] : rows) {
      if (row_status == "placed" || row_status == "pending") {
        r.Add(undo, gid,
              tx.mode + " " + outcome + " but order branch " + branch + " is " + row_status);
      }
    }
    for (const auto& [branch, row_status] : paid) {
      if (row_status == "paid") {
        r.Add(undo, gid, tx.mode + " " + outcome + " but payment " + branch + " is paid");
      }
    }
  }
}

// 2. Stock is conserved and sold exactly what committed transactions bought.
void CheckStock(const std::map<std::string, Tx>& txs, const Observations& seen, Report& r) {
  std::map<std::string, int64_t> bought;
  std::map<std::string, std::vector<std::string>> on_sku;
  for (const auto& [gid, tx] : txs) {
    if (tx.mode.empty() || !ShapeOf(tx.mode).touches_stock) continue;
    on_sku[tx.sku].push_back(gid);
    if (StatusIn(seen, gid) == "committed") bought[tx.sku] += tx.qty;
  }
  auto who = [&](const std::string& sku) {
    const auto& gids = on_sku[sku];
    std::string out = " (" + std::to_string(gids.size()) + " transactions";
    for (size_t i = 0; i < gids.size() && i < 6; ++i) {
      out += (i == 0 ? ": " : ", ") + gids[i] + " " + StatusIn(seen, gids[i]);
    }
    return out + (gids.size() > 6 ? ", ...)" : ")");
  };
  for (const auto& [sku, initial] : seen.initial_available) {
    auto it = seen.stock.find(sku);
    if (it == seen.stock.end()) {
      r.Add(2, sku, "the SKU's stock row is gone");
      continue;
    }
    const Observations::Stock& s = it->second;
    if (s.available + s.reserved + s.sold != initial) {
      r.Add(2, sku,
            "stock not conserved: " + std::to_string(s.available) + "+" +
                std::to_string(s.reserved) + "+" + std::to_string(s.sold) +
                " != " + std::to_string(initial) + who(sku));
    }
    if (s.reserved != 0) {
      r.Add(3, sku,
            std::to_string(s.reserved) + " left reserved (a try never confirmed or cancelled)" +
                who(sku));
    }
    if (s.sold != bought[sku]) {
      r.Add(2, sku,
            "sold " + std::to_string(s.sold) + " but committed transactions bought " +
                std::to_string(bought[sku]) + who(sku));
    }
  }
  for (const auto& [db, n] : seen.prepared) {
    if (n != 0) r.Add(2, db, std::to_string(n) + " prepared transactions left");
  }
}

// 4. A transactional message is on the topic if and only if its local transaction committed.
void CheckMessages(const std::map<std::string, Tx>& txs, const Observations& seen, Report& r) {
  std::map<std::string, int> published;  // by key
  for (const auto& m : seen.topic) {
    if (!m.message_id.empty()) ++published[m.key];
  }
  std::set<std::string> expected;
  for (const auto& [gid, tx] : txs) {
    if (tx.mode != "msg") continue;
    std::string key = gid + ":" + ShapeOf("msg").order_branch;
    bool committed = StatusIn(seen, gid) == "committed";
    if (committed) expected.insert(key);
    if (committed && published[key] == 0 && seen.topic_error.empty()) {
      r.Add(4, gid, "committed but its message is not on the topic");
    }
    if (!committed && published[key] > 0) {
      r.Add(4, gid, "ended " + StatusIn(seen, gid) + " but its message was published");
    }
  }
  for (const auto& [key, n] : published) {
    if (!expected.count(key) && !txs.count(key.substr(0, key.rfind(':')))) {
      r.Add(4, key, "a message no transaction of the run committed");
    }
  }
}

// 5. Every outbox event reaches the topic, in its aggregate's order, and the inbox applies it
// exactly once.
void CheckEvents(const Observations& seen, Report& r) {
  if (!seen.topic_error.empty()) r.Add(5, "topic", seen.topic_error);
  std::map<std::string, size_t> first_at;  // event id -> position of its first copy
  std::map<std::string, Observations::Sales> applied;
  for (size_t i = 0; i < seen.topic.size(); ++i) {
    const auto& m = seen.topic[i];
    if (m.event_id.empty() || first_at.count(m.event_id)) continue;
    first_at[m.event_id] = i;
    if (m.event_type == "OrderPlaced") applied[m.sku].placed += m.qty;
    if (m.event_type == "OrderCancelled") applied[m.sku].cancelled += m.qty;
    if (!seen.inbox.count(m.event_id)) r.Add(5, m.event_id, "on the topic, never applied");
  }
  std::map<std::string, std::vector<const Observations::OutboxRow*>> by_aggregate;
  for (const auto& row : seen.outbox) {
    if (row.status != "sent") {
      r.Add(5, row.event_id, "outbox row left " + row.status);
    } else if (!first_at.count(row.event_id) && seen.topic_error.empty()) {
      r.Add(5, row.event_id, "outbox row marked sent but not on the topic");
    }
    by_aggregate[row.aggregate].push_back(&row);
  }
  for (const auto& [aggregate, rows] : by_aggregate) {
    size_t last = 0;
    std::string last_id;
    for (const auto* row : rows) {
      auto it = first_at.find(row->event_id);
      if (it == first_at.end()) continue;
      if (!last_id.empty() && it->second < last) {
        r.Add(5, row->event_id,
              "published before " + last_id + ", written after it (aggregate " + aggregate + ")");
      }
      last = it->second;
      last_id = row->event_id;
    }
  }
  std::set<std::string> skus;
  for (const auto& [sku, s] : applied) skus.insert(sku);
  for (const auto& [sku, s] : seen.sales) skus.insert(sku);
  for (const std::string& sku : skus) {
    Observations::Sales want = applied.count(sku) ? applied.at(sku) : Observations::Sales{};
    Observations::Sales got = seen.sales.count(sku) ? seen.sales.at(sku) : Observations::Sales{};
    if (want.placed != got.placed || want.cancelled != got.cancelled) {
      r.Add(5, sku,
            "inbox applied placed " + std::to_string(got.placed) + ", cancelled " +
                std::to_string(got.cancelled) + "; the topic's distinct events say " +
                std::to_string(want.placed) + ", " + std::to_string(want.cancelled));
    }
  }
}

// The outcome an accepted answer promises: its final status, or the decision it reports
// (an accepted abort, "aborting", must end aborted; "committing", committed). Empty: none.
std::string Promised(const std::string& status) {
  if (status == "committed" || status == "committing") return "committed";
  if (status == "aborted" || status == "aborting") return "aborted";
  return "";
}

// 6. No answer a client got contradicts the final state.
void CheckAnswers(const std::map<std::string, Tx>& txs, const Observations& seen, Report& r) {
  for (const auto& [gid, tx] : txs) {
    std::string status = StatusIn(seen, gid);
    for (const HistoryEvent* a : tx.answers) {
      std::string promised = Promised(a->status);
      if (a->http / 100 != 2 || promised.empty() || promised == status) continue;
      r.Add(6, gid,
            "a client was answered " + a->status + " (" + a->action +
                " at t=" + std::to_string(a->t_ms) + " ms) but it ended " +
                (status.empty() ? "unknown to the store" : status));
    }
  }
}

}  // namespace

ModeShape ShapeOf(const std::string& mode) {
  if (mode == "saga" || mode == "saga-abort") {
    return ModeShape{
        .order_branch = "create-order", .payment_branch = "charge-payment", .compensates = true};
  }
  if (mode == "saga-adhoc") {
    return ModeShape{.order_branch = "create", .payment_branch = "pay", .compensates = true};
  }
  if (mode == "msg") return ModeShape{.order_branch = "order", .touches_stock = false};
  return ModeShape{.order_branch = "order", .compensates = mode == "tcc" || mode == "tcc-client"};
}

std::string ToString(const Violation& v) {
  return "invariant " + std::to_string(v.invariant) + " [" + v.subject + "]: " + v.detail;
}

std::vector<Violation> Check(const std::vector<HistoryEvent>& history, const Observations& seen) {
  std::map<std::string, Tx> txs = Transactions(history);
  Report r;
  CheckFinal(txs, seen, r);
  CheckRows(txs, seen, r);
  CheckStock(txs, seen, r);
  CheckMessages(txs, seen, r);
  CheckEvents(seen, r);
  CheckAnswers(txs, seen, r);
  return r.Take();
}

}  // namespace treaty::chaos
