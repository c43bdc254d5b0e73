#include "integration-tests/chaos/chaos_run.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <filesystem>
#include <pqxx/pqxx>
#include <sstream>

#include "integration-tests/chaos/chaos_cluster.h"
#include "integration-tests/chaos/nemesis.h"
#include "integration-tests/chaos/workload.h"
#include "integration-tests/harness/process.h"

namespace treaty::chaos {
namespace {

using Rows = std::vector<std::vector<std::string>>;

Result<Rows> Query(harness::PgCluster& pg, const std::string& db, const std::string& sql) {
  try {
    pqxx::connection conn(pg.ConnectionString(db));
    pqxx::nontransaction tx(conn);
    Rows out;
    for (const auto& row : tx.exec(sql)) {
      std::vector<std::string> fields;
      for (const auto& f : row) fields.push_back(f.is_null() ? "" : f.c_str());
      out.push_back(std::move(fields));
    }
    return out;
  } catch (const std::exception& e) {
    return Status::Unavailable(db + ": " + e.what());
  }
}

// -1 when the database cannot answer.
int64_t Count(harness::PgCluster& pg, const std::string& db, const std::string& sql) {
  auto v = pg.QueryValue(db, sql);
  return v.ok() && !v->empty() ? std::stoll(*v) : -1;
}

// A line of the probe: key, value, then "name=value;" per header, tab-separated.
Observations::Message ParseMessage(const std::string& line) {
  Observations::Message m;
  std::vector<std::string> cols;
  std::istringstream in(line);
  for (std::string col; std::getline(in, col, '\t');) cols.push_back(col);
  if (!cols.empty()) m.key = cols[0];
  if (cols.size() > 2) {
    std::istringstream headers(cols[2]);
    for (std::string h; std::getline(headers, h, ';');) {
      size_t eq = h.find('=');
      if (eq == std::string::npos) continue;
      std::string name = h.substr(0, eq), value = h.substr(eq + 1);
      if (name == "treaty-event-id") m.event_id = value;
      if (name == "treaty-message-id") m.message_id = value;
      if (name == "treaty-event-type") m.event_type = value;
    }
  }
  if (cols.size() > 1) {
    try {
      Poco::JSON::Parser parser;
      auto o = parser.parse(cols[1]).extract<Poco::JSON::Object::Ptr>();
      m.sku = o->optValue<std::string>("sku", "");
      m.qty = o->optValue<int64_t>("qty", 0);
    } catch (const std::exception&) {
    }
  }
  return m;
}

const char* kUnfinished =
    "SELECT count(*) FROM treaty.transactions WHERE status NOT IN ('committed', 'aborted')";

// Waits, each within its bound, for every transaction to end, the prepared transactions to be
// finished, the outbox to drain and the inbox to catch up. Says on stderr what did not happen:
// the checker then reports it as a violation.
void Quiesce(ChaosCluster& c, const RunConfig& config) {
  auto& pg = c.pg();
  auto wait = [&](const char* what, Duration bound, const std::function<bool()>& done) {
    if (!harness::WaitUntil(done, bound, std::chrono::milliseconds(250))) {
      std::cerr << "chaos: not quiet within the bound: " << what << "\n";
    }
  };
  wait("transactions unfinished", config.quiet_bound,
       [&] { return Count(pg, "treaty", kUnfinished) == 0; });
  wait("prepared transactions left", std::chrono::seconds(60),
       [&] { return Count(pg, "orders", "SELECT count(*) FROM pg_prepared_xacts") == 0; });
  wait("outbox rows pending", std::chrono::seconds(60), [&] {
    return Count(pg, "orders", "SELECT count(*) FROM treaty_outbox WHERE status = 'pending'") == 0;
  });
  wait("inbox behind", std::chrono::seconds(60), [&] {
    int64_t sent = Count(pg, "orders", "SELECT count(*) FROM treaty_outbox WHERE status = 'sent'");
    int64_t msgs = Count(pg, "treaty",
                         "SELECT count(*) FROM treaty.transactions WHERE mode = 'msg' AND "
                         "status = 'committed'");
    return sent >= 0 && msgs >= 0 &&
           Count(pg, "inventory", "SELECT count(*) FROM treaty_inbox") >= sent + msgs;
  });
}

Result<Observations> Observe(ChaosCluster& c, std::map<std::string, int64_t> initial) {
  auto& pg = c.pg();
  Observations seen;
  seen.initial_available = std::move(initial);
  auto tx = Query(pg, "treaty", "SELECT gid, status FROM treaty.transactions");
  if (!tx.ok()) return tx.status();
  for (auto& r : *tx) seen.final_status[r[0]] = r[1];
  auto stock = Query(pg, "inventory", "SELECT sku, available, reserved, sold FROM stock");
  if (!stock.ok()) return stock.status();
  for (auto& r : *stock) {
    seen.stock[r[0]] = {std::stoll(r[1]), std::stoll(r[2]), std::stoll(r[3])};
  }
  auto sales = Query(pg, "inventory", "SELECT sku, placed, cancelled FROM sales");
  if (!sales.ok()) return sales.status();
  for (auto& r : *sales) seen.sales[r[0]] = {std::stoll(r[1]), std::stoll(r[2])};
  auto inbox = Query(pg, "inventory", "SELECT event_id FROM treaty_inbox");
  if (!inbox.ok()) return inbox.status();
  for (auto& r : *inbox) seen.inbox.insert(r[0]);
  auto orders = Query(pg, "orders", "SELECT gid, branch_id, status FROM orders");
  if (!orders.ok()) return orders.status();
  for (auto& r : *orders) seen.orders.push_back({r[0], r[1], r[2]});
  auto payments = Query(pg, "orders", "SELECT gid, branch_id, status FROM payments");
  if (!payments.ok()) return payments.status();
  for (auto& r : *payments) seen.payments.push_back({r[0], r[1], r[2]});
  for (const char* db : {"orders", "inventory"}) {
    int64_t n =
        Count(pg, db,
              std::string("SELECT count(*) FROM pg_prepared_xacts WHERE database = '") + db + "'");
    if (n < 0)
      return Status::Unavailable(std::string("cannot count prepared transactions in ") + db);
    seen.prepared[db] = static_cast<int>(n);
  }
  auto outbox = Query(pg, "orders",
                      "SELECT id, event_id, aggregate_key, event_type, status FROM treaty_outbox "
                      "ORDER BY id");
  if (!outbox.ok()) return outbox.status();
  for (auto& r : *outbox) seen.outbox.push_back({std::stoll(r[0]), r[1], r[2], r[3], r[4]});
  int64_t committed_msgs = 0;
  for (const auto& [gid, status] : seen.final_status) {
    if (gid.find("-msg-") != std::string::npos && status == "committed") ++committed_msgs;
  }
  int expected = static_cast<int>(seen.outbox.size() + committed_msgs);
  auto lines = c.broker().ConsumeAll(ChaosCluster::kEventsTopic, expected, /*headers=*/true);
  if (!lines.ok()) {
    seen.topic_error = lines.status().message().substr(0, 2000);
    // What is there, to name what is missing.
    lines = c.broker().ConsumeAll(ChaosCluster::kEventsTopic, 0, true);
  }
  if (lines.ok()) {
    for (const std::string& l : *lines) seen.topic.push_back(ParseMessage(l));
  }
  return seen;
}

void KeepLogs(ChaosCluster& c, const std::string& out_dir) {
  std::filesystem::create_directories(out_dir + "/logs");
  for (const std::string& f : c.LogFiles()) {
    std::error_code ec;
    std::filesystem::copy_file(f, out_dir + "/logs/" + std::filesystem::path(f).filename().string(),
                               std::filesystem::copy_options::overwrite_existing, ec);
  }
}

}  // namespace

std::string RunReport::Summary(const RunConfig& config) const {
  std::ostringstream out;
  out << "chaos: seed " << config.seed << ", "
      << std::chrono::duration_cast<std::chrono::seconds>(config.duration).count()
      << " s of workload, " << config.clients << " clients\n";
  out << "faults:";
  int64_t total = 0;
  for (const auto& [kind, n] : faults) {
    out << " " << kind << "=" << n;
    total += n;
  }
  out << " (" << total << " in all)\ntransactions:\n";
  for (const auto& [mode, by_status] : outcomes) {
    out << "  " << mode << ":";
    for (const auto& [status, n] : by_status) out << " " << status << "=" << n;
    out << "\n";
  }
  out << "outbox events " << outbox_events << ", messages on the topic " << topic_messages << "\n";
  out << "violations: " << violations.size() << "\n";
  for (const Violation& v : violations) out << "  " << ToString(v) << "\n";
  return out.str();
}

Result<RunReport> RunChaos(const RunConfig& config) {
  std::filesystem::create_directories(config.out_dir);
  const std::string history_path = config.out_dir + "/history.jsonl";
  auto history = HistoryWriter::Open(history_path);
  if (!history.ok()) return history.status();
  const Duration lease = std::chrono::seconds(2);
  auto cluster = ChaosCluster::Start(ClusterOptions{.lease = "2s", .branch_call = "900ms"});
  if (!cluster.ok()) return cluster.status();
  ChaosCluster& c = **cluster;
  Workload workload(c, **history, WorkloadOptions{.seed = config.seed, .clients = config.clients});
  auto initial = workload.SetUpStock();
  if (!initial.ok()) return initial.status();

  Nemesis nemesis(c, **history,
                  NemesisOptions{.seed = config.seed, .lease = lease, .only = config.faults});
  workload.Start();
  Status ran = nemesis.RunUntil(std::chrono::steady_clock::now() + config.duration);
  workload.Stop();
  if (!ran.ok()) {
    KeepLogs(c, config.out_dir);
    return ran;
  }
  (*history)->Append(HistoryEvent{.type = "healed"});
  Quiesce(c, config);
  // A coordinator just resumed may still act on what it knew before its pause: a call it had
  // begun, a record it was about to write. No call starts without its whole budget on a lease,
  // and no record is written past one (the fence), so once no lease runs by the store's clock,
  // what is read is what stays.
  if (!harness::WaitUntil(
          [&] {
            return Count(c.pg(), "treaty",
                         "SELECT count(*) FROM treaty.transactions WHERE lease_until > now()") == 0;
          },
          std::chrono::seconds(60), std::chrono::milliseconds(250))) {
    std::cerr << "chaos: not quiet within the bound: leases still running\n";
  }
  Quiesce(c, config);
  auto seen = Observe(c, std::move(*initial));
  if (!seen.ok()) return seen.status();
  auto events = ReadHistory(history_path);
  if (!events.ok()) return events.status();

  RunReport report;
  report.faults = nemesis.injected();
  report.violations = Check(*events, *seen);
  for (const HistoryEvent& e : *events) {
    if (e.type != "invoke") continue;
    auto it = seen->final_status.find(e.gid);
    ++report.outcomes[e.mode][it == seen->final_status.end() ? "never-begun" : it->second];
  }
  report.topic_messages = static_cast<int64_t>(seen->topic.size());
  report.outbox_events = static_cast<int64_t>(seen->outbox.size());
  if (!report.violations.empty() || config.keep_logs) KeepLogs(c, config.out_dir);
  return report;
}

}  // namespace treaty::chaos
