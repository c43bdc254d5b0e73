#include "bench/bench_run.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "bench/report.h"
#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/temp_dir.h"
#include "integration-tests/harness/test_support.h"
#include "outbox/outbox.h"

namespace treaty::bench {

using harness::Process;
using harness::ProcessSpec;
using harness::Service;
using harness::ServiceSpec;
using Poco::JSON::Array;
using Poco::JSON::Object;

namespace {

Result<int64_t> RssKib(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return Status::NotFound(field + " not found for pid " + std::to_string(pid));
}

}  // namespace

Status BenchRun::Run(Object::Ptr out) {
  if (Status s = stack_.Start(); !s.ok()) return s;
  out->set("machine", MachineDescription(stack_.pg(), o_.kind));
  Object::Ptr figures = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  out->set("results", figures);

  Array::Ptr modes = new Array();
  for (const char* mode : {"2pc", "tcc", "saga", "msg"}) {
    auto r = Load(mode, o_.clients, std::string(mode) == "saga" ? 3 : 2);
    if (!r.ok()) return r.status();
    modes->add(*r);
  }
  figures->set("modes", modes);

  Object::Ptr ceilings = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  auto http = Load("http", o_.clients, 1);
  if (!http.ok()) return http.status();
  ceilings->set("raw_http", *http);
  // One client: the raw round trip that p50_floor_1client counts five of.
  auto http_one = Load("http", 1, 1);
  if (!http_one.ok()) return http_one.status();
  ceilings->set("raw_http_1client", *http_one);
  Say("raw produce: " + std::to_string(o_.produce_messages) + " messages to the dev broker");
  ProduceResult produced = Produce(stack_.broker().bootstrap(), o_.produce_messages, 100);
  Object::Ptr produce = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  produce->set("messages", o_.produce_messages);
  produce->set("per_second", produced.rate);
  produce->set("failed", produced.failed);
  ceilings->set("raw_produce", produce);
  PgCeilings pg_ceilings(stack_, o_);
  Array::Ptr pgbench = new Array();
  for (int clients : o_.client_counts) {
    auto r = pg_ceilings.PgBench(clients);
    if (!r.ok()) return r.status();
    pgbench->add(*r);
  }
  ceilings->set("pgbench", pgbench);
  auto writes = pg_ceilings.PgBenchTreatyWrites(o_.clients);
  if (!writes.ok()) return writes.status();
  ceilings->set("pgbench_treaty_writes", *writes);
  auto outbox_sql = pg_ceilings.OutboxSqlAlone();
  if (!outbox_sql.ok()) return outbox_sql.status();
  ceilings->set("outbox_sql_alone", *outbox_sql);
  figures->set("ceilings", ceilings);

  Array::Ptr by_clients = new Array();
  for (int clients : o_.client_counts) {
    auto r = Load("2pc", clients, 2);
    if (!r.ok()) return r.status();
    by_clients->add(*r);
  }
  figures->set("scaling_clients", by_clients);
  Array::Ptr by_branches = new Array();
  for (int branches : o_.branch_counts) {
    auto r = Load("2pc", o_.clients, branches);
    if (!r.ok()) return r.status();
    by_branches->add(*r);
  }
  figures->set("scaling_branches", by_branches);

  Object::Ptr memory = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  auto hwm = RssKib(stack_.treatyd().process().pid(), "VmHWM");
  if (!hwm.ok()) return hwm.status();
  memory->set("peak_rss_mib_under_load", static_cast<double>(*hwm) / 1024.0);
  memory->set("max_clients", o_.client_counts.back());
  auto backlog = Backlog();
  if (!backlog.ok()) return backlog.status();
  memory->set("backlog", *backlog);
  figures->set("memory", memory);

  auto attack = UnderAttack();
  if (!attack.ok()) return attack.status();
  figures->set("under_attack", *attack);

  auto outbox = Outbox();
  if (!outbox.ok()) return outbox.status();
  figures->set("outbox", *outbox);

  Array::Ptr wal = new Array();
  for (const char* write : {"row_deleted", "message"}) {
    auto r = OutboxWal(write, pg_ceilings);
    if (!r.ok()) return r.status();
    wal->add(*r);
  }
  figures->set("outbox_wal", wal);
  figures->set("targets", Targets(figures));
  return Status::Ok();
}

Result<Object::Ptr> BenchRun::OutboxWal(const std::string& write, PgCeilings& ceilings) {
  const std::string db = "wal_" + write;
  const std::string relay_slot = "relay_" + write, alone_slot = "alone_" + write;
  Say("outbox, mode: wal: " + std::to_string(o_.outbox_rows) + " events written as " + write +
      ", then drained by treaty-relay");
  Status s = stack_.pg().CreateDatabase(db);
  if (s.ok()) s = stack_.pg().Execute(db, participant::Outbox::SchemaSql());
  if (s.ok()) {
    s = stack_.pg().Execute(
        db, "CREATE PUBLICATION treaty_outbox FOR TABLE treaty_outbox WITH (publish = 'insert')");
  }
  // Both slots before the events, so that both see all of them.
  for (const std::string& slot : {relay_slot, alone_slot}) {
    if (s.ok()) {
      s = stack_.pg().Execute(
          db, "SELECT pg_create_logical_replication_slot('" + slot + "', 'pgoutput')");
    }
  }
  if (!s.ok()) return s;
  // The events of the polling relay's preload (1,000 aggregates), 100 to a transaction, as
  // the kit writes them (Outbox::AppendForWal).
  const std::string event =
      "'e-' || g, 'order', (g % 1000)::text, 'OrderPlaced', 'bench.outbox', (g % 1000)::text, "
      "jsonb_build_object('order', g, 'sku', 'A1', 'qty', 1)";
  const std::string one_tx =
      write == "message"
          ? "PERFORM pg_logical_emit_message(true, 'treaty_outbox', json_build_object("
            "'event_id', 'e-' || n, 'aggregate_type', 'order', 'aggregate_id', (n % 1000)::text, "
            "'event_type', 'OrderPlaced', 'topic', 'bench.outbox', 'key', (n % 1000)::text, "
            "'payload', json_build_object('order', n, 'sku', 'A1', 'qty', 1))::text) "
            "FROM generate_series(b * 100 + 1, b * 100 + 100) AS s(n);"
          : "FOR g IN b * 100 + 1 .. b * 100 + 100 LOOP "
            "INSERT INTO treaty_outbox (event_id, aggregate_type, aggregate_id, event_type, topic, "
            "key, payload) VALUES (" +
                event +
                "); DELETE FROM treaty_outbox WHERE id = "
                "currval(pg_get_serial_sequence('treaty_outbox', 'id')); END LOOP;";
  s = stack_.pg().Execute(db, "DO $$ DECLARE g bigint; BEGIN FOR b IN 0 .. " +
                                  std::to_string(o_.outbox_rows / 100 - 1) + " LOOP " + one_tx +
                                  " COMMIT; END LOOP; END $$");
  if (!s.ok()) return s;
  const int64_t events = o_.outbox_rows / 100 * 100;
  auto end_lsn = stack_.pg().QueryValue(db, "SELECT pg_current_wal_lsn()");
  if (!end_lsn.ok()) return end_lsn.status();

  auto alone = ceilings.WalDecodeAlone(db, alone_slot, *end_lsn, events);
  if (!alone.ok()) return alone.status();
  s = stack_.pg().Execute(db, "SELECT pg_drop_replication_slot('" + alone_slot + "')");
  if (!s.ok()) return s;

  auto started = std::chrono::steady_clock::now();
  auto relay = Service::Start(ServiceSpec{.name = "treaty-relay-wal",
                                          .binary = harness::kRelayPath,
                                          .config_yaml = "listen: 127.0.0.1:0\n"
                                                         "database: { url: \"" +
                                                         stack_.pg().Url(db) +
                                                         "\" }\n"
                                                         "kafka: { bootstrap_servers: \"" +
                                                         stack_.broker().bootstrap() +
                                                         "\" }\n"
                                                         "mode: wal\n"
                                                         "wal: { slot: " +
                                                         relay_slot +
                                                         " }\n"
                                                         "log: { level: warn }\n"});
  if (!relay.ok()) return relay.status();
  // Done when the slot's confirmed position reached the end of the events: the relay confirms
  // only what the broker acknowledged.
  bool drained = harness::WaitUntil(
      [&] {
        auto done = stack_.pg().QueryValue(
            db, "SELECT confirmed_flush_lsn >= '" + *end_lsn +
                    "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + relay_slot + "'");
        return done.ok() && *done == "t";
      },
      std::chrono::minutes(10), std::chrono::milliseconds(20));
  if (!drained) return Status::DeadlineExceeded("the WAL relay did not drain in 10 minutes");
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  (void)(*relay)->Stop();
  relay->reset();
  s = stack_.pg().Execute(db, "SELECT pg_drop_replication_slot('" + relay_slot + "')");
  if (!s.ok()) return s;
  std::fprintf(stderr, "    drained in %.2f s (%.0f/s)\n", seconds,
               static_cast<double>(events) / seconds);
  Object::Ptr r = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  r->set("write", write);
  r->set("events", events);
  Object::Ptr relay_figure = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  relay_figure->set("seconds", seconds);
  relay_figure->set("per_second", static_cast<double>(events) / seconds);
  r->set("relay", relay_figure);
  r->set("decode_alone", *alone);
  return r;
}

Result<Object::Ptr> BenchRun::UnderAttack() {
  constexpr int kIdle = 1500, kSlow = 200, kClients = 8;
  Say("under attack: 2PC, " + std::to_string(kClients) + " clients, beside " +
      std::to_string(kIdle) + " idle and " + std::to_string(kSlow) + " trickling connections");
  const std::string url = stack_.treatyd().base_url();
  const Poco::Net::SocketAddress address(url.substr(url.find("//") + 2));
  std::vector<Poco::Net::StreamSocket> idle(kIdle), slow(kSlow);
  try {
    for (auto& c : idle) c.connect(address);
    const std::string start = "POST /v1/transactions HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    for (auto& c : slow) {
      c.connect(address);
      c.sendBytes(start.data(), static_cast<int>(start.size()));
    }
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("cannot open the attack's connections: ") + e.what());
  }
  std::atomic<bool> done{false};
  std::thread trickle([&] {
    while (!done) {
      for (auto& c : slow) {
        try {
          c.sendBytes("x", 1);
        } catch (const std::exception&) {  // cut off by treatyd's deadline, as it should be
        }
      }
      for (int i = 0; i < 10 && !done; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  });
  auto r = Load("2pc", kClients, 2);
  done = true;
  trickle.join();
  if (!r.ok()) return r.status();
  (*r)->set("idle_connections", kIdle);
  (*r)->set("trickling_connections", kSlow);
  return *r;
}

Result<Object::Ptr> BenchRun::Load(const std::string& mode, int clients, int branches) {
  Say("load: " + mode + ", " + std::to_string(clients) + " clients, " + std::to_string(branches) +
      " branches");
  auto dir = harness::TempDir::Create("load");
  if (!dir.ok()) return dir.status();
  auto p = Process::Start(ProcessSpec{
      .name = "load",
      .argv = {self_, "load", "--treatyd", stack_.treatyd().base_url(), "--participant",
               stack_.participant().base_url(), "--mode", mode, "--clients",
               std::to_string(clients), "--branches", std::to_string(branches), "--warmup",
               std::to_string(
                   std::chrono::duration_cast<std::chrono::milliseconds>(o_.warmup).count()) +
                   "ms",
               "--seconds",
               std::to_string(
                   std::chrono::duration_cast<std::chrono::milliseconds>(o_.measure).count()) +
                   "ms",
               "--run-id", "r" + std::to_string(++runs_)},
      .log_path = dir->File("load.log"),
      .pipe_stdout = true});
  if (!p.ok()) return p.status();
  auto line = (*p)->ReadLine(o_.warmup + o_.measure + std::chrono::seconds(180));
  auto code = (*p)->Wait(std::chrono::seconds(180));
  if (!line || !code.ok() || *code != 0) {
    return Status::Internal("the load run failed: " + (*p)->ReadLog());
  }
  Poco::JSON::Parser parser;
  Object::Ptr r = parser.parse(*line).extract<Object::Ptr>();
  std::fprintf(stderr, "    %.0f/s  p50 %.1f ms  p99 %.1f ms  errors %lld\n",
               r->getValue<double>("tps"), r->getValue<double>("p50_ms"),
               r->getValue<double>("p99_ms"),
               static_cast<long long>(r->getValue<int64_t>("errors")));
  return r;
}

Result<Object::Ptr> BenchRun::Backlog() {
  Say("backlog: " + std::to_string(o_.backlog) +
      " committing 2PC transactions in the store, treatyd restarted over them");
  if (auto s = stack_.treatyd().Stop(); !s.ok()) return s.status();
  std::string n = std::to_string(o_.backlog);
  std::string url = stack_.participant().base_url() + "/2pc/";
  Status s = stack_.pg().Execute(
      "treaty",
      "INSERT INTO treaty.transactions (gid, mode, status, request, request_digest, submitted, "
      "reason, deadline, next_attempt_at, ops, op_state) SELECT 'backlog-' || g, '2pc', "
      "'committing', '{}', 'bench', true, 'all 2 branches prepared', "
      "now() + interval '1 hour', now(), o.ops, o.op_state FROM generate_series(1, " +
          n +
          ") g, "
          "(SELECT jsonb_agg(jsonb_build_object('branch_id', 'b' || b, 'op', op, 'position', b, "
          "'url', '" +
          url +
          "' || op, 'payload', '{}'::jsonb, 'after_ids', '')) AS ops, "
          "jsonb_object_agg('b' || b || '/' || op, jsonb_build_object('status', CASE WHEN "
          "op = 'prepare' THEN 'succeeded' ELSE 'pending' END, 'attempts', CASE WHEN op = "
          "'prepare' THEN 1 ELSE 0 END)) AS op_state FROM generate_series(1, 2) b, "
          "unnest(ARRAY['prepare', 'commit', 'abort']) op) o");
  if (!s.ok()) return s;
  auto started = std::chrono::steady_clock::now();
  if (Status r = stack_.treatyd().Restart(); !r.ok()) return r;
  if (Status r = stack_.WaitReady(); !r.ok()) return r;
  int64_t peak_kib = 0;
  bool drained = harness::WaitUntil(
      [&] {
        if (auto rss = RssKib(stack_.treatyd().process().pid(), "VmRSS"); rss.ok()) {
          peak_kib = std::max(peak_kib, *rss);
        }
        // EXISTS, as for the outbox below: the unfinished index's head, not a count.
        auto left = stack_.pg().QueryValue("treaty",
                                           "SELECT EXISTS (SELECT 1 FROM treaty.transactions WHERE "
                                           "status = 'committing' AND gid LIKE 'backlog-%')");
        return left.ok() && *left == "f";
      },
      std::chrono::minutes(10), std::chrono::milliseconds(100));
  if (!drained) return Status::DeadlineExceeded("the backlog was not finished in 10 minutes");
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  auto hwm = RssKib(stack_.treatyd().process().pid(), "VmHWM");
  Object::Ptr r = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  r->set("transactions", o_.backlog);
  r->set("seconds", seconds);
  r->set("per_second", static_cast<double>(o_.backlog) / seconds);
  r->set("peak_rss_mib", static_cast<double>(hwm.ok() ? *hwm : peak_kib) / 1024.0);
  std::fprintf(stderr, "    finished in %.1f s (%.0f/s), peak RSS %.1f MiB\n", seconds,
               static_cast<double>(o_.backlog) / seconds, r->getValue<double>("peak_rss_mib"));
  return r;
}

Result<Object::Ptr> BenchRun::Outbox() {
  Say("outbox: " + std::to_string(o_.outbox_rows) + " rows drained by treaty-relay");
  Status s = stack_.pg().Execute("outbox", participant::Outbox::SchemaSql());
  if (!s.ok()) return s;
  s = stack_.PreloadOutbox("treaty_outbox", o_.outbox_rows);
  if (!s.ok()) return s;
  auto started = std::chrono::steady_clock::now();
  auto relay = Service::Start(ServiceSpec{.name = "treaty-relay",
                                          .binary = harness::kRelayPath,
                                          .config_yaml = "listen: 127.0.0.1:0\n"
                                                         "database: { url: \"" +
                                                         stack_.pg().Url("outbox") +
                                                         "\" }\n"
                                                         "kafka: { bootstrap_servers: \"" +
                                                         stack_.broker().bootstrap() +
                                                         "\" }\n"
                                                         "log: { level: warn }\n"});
  if (!relay.ok()) return relay.status();
  bool drained = harness::WaitUntil(
      [&] {
        // EXISTS reads the pending index's head; a count(*) of a large backlog every 100 ms
        // (parallel workers and all) took CPU from the relay being measured.
        auto left = stack_.pg().QueryValue(
            "outbox", "SELECT EXISTS (SELECT 1 FROM treaty_outbox WHERE status = 'pending')");
        return left.ok() && *left == "f";
      },
      std::chrono::minutes(10), std::chrono::milliseconds(100));
  if (!drained) return Status::DeadlineExceeded("the outbox was not drained in 10 minutes");
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  Object::Ptr r = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  r->set("rows", o_.outbox_rows);
  r->set("seconds", seconds);
  r->set("per_second", static_cast<double>(o_.outbox_rows) / seconds);
  std::fprintf(stderr, "    drained in %.1f s (%.0f/s)\n", seconds,
               static_cast<double>(o_.outbox_rows) / seconds);
  return r;
}

}  // namespace treaty::bench
