#include "bench/ceilings.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "coordinator/store/migrations.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/temp_dir.h"
#include "outbox/outbox.h"

namespace treaty::bench {

using harness::Process;
using harness::ProcessSpec;
using Poco::JSON::Object;

namespace {

void CountFailure(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  if (m->err) ++*static_cast<std::atomic<int64_t>*>(opaque);
}

// The newest PostgreSQL bin directory (pgbench lives there).
std::string PgBinDir() {
  if (const char* env = std::getenv("TREATY_PG_BINDIR")) return env;  // NOLINT
  std::string best;
  for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql")) {
    std::string bin = e.path().string() + "/bin";
    if (std::filesystem::exists(bin + "/pgbench") && bin > best) best = bin;
  }
  return best;
}

}  // namespace

ProduceResult Produce(const std::string& bootstrap, int64_t messages, size_t size) {
  std::atomic<int64_t> failed{0};
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (auto [k, v] : std::map<std::string, std::string>{{"bootstrap.servers", bootstrap},
                                                        {"enable.idempotence", "true"},
                                                        {"acks", "all"},
                                                        {"linger.ms", "5"}}) {
    rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err);
  }
  rd_kafka_conf_set_dr_msg_cb(conf, CountFailure);
  rd_kafka_conf_set_opaque(conf, &failed);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) return {0, messages};
  std::string value(size, 'x');
  auto started = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < messages; ++i) {
    std::string key = "k" + std::to_string(i % 1000);
    while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("bench.raw"),
                             RD_KAFKA_V_KEY(key.data(), key.size()),
                             RD_KAFKA_V_VALUE(value.data(), value.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 10);
    }
    rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 120000);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  rd_kafka_destroy(rk);
  return {static_cast<double>(messages) / seconds, failed.load()};
}

Result<Object::Ptr> PgCeilings::PgBench(int clients) {
  Say("pgbench: one INSERT and one UPDATE per transaction, " + std::to_string(clients) +
      " clients");
  Status s =
      stack_.pg().Execute("ceiling",
                          "DROP TABLE IF EXISTS bench_tx; CREATE TABLE bench_tx (id bigint "
                          "PRIMARY KEY, status text NOT NULL, at timestamptz DEFAULT now())");
  if (!s.ok()) return s;
  return RunPgBench("ceiling",
                    "\\set id random(1, 9000000000000000)\n"
                    "BEGIN;\n"
                    "INSERT INTO bench_tx (id, status) VALUES (:id, 'active') ON CONFLICT DO "
                    "NOTHING;\n"
                    "UPDATE bench_tx SET status = 'committed' WHERE id = :id;\n"
                    "END;\n",
                    {"-c", std::to_string(clients), "-j", std::to_string(std::min(clients, 2)),
                     "-T", std::to_string(MeasureSeconds())},
                    clients);
}

Result<Object::Ptr> PgCeilings::PgBenchTreatyWrites(int clients) {
  Say("pgbench: treatyd's three writes of a 2PC transaction, " + std::to_string(clients) +
      " clients");
  std::string schema = "DROP SCHEMA IF EXISTS treaty CASCADE; CREATE SCHEMA treaty;";
  for (const store::Migration& m : store::Migrations()) schema += std::string(m.sql) + ";";
  Status s = stack_.pg().Execute("ceiling", schema);
  if (!s.ok()) return s;
  const std::string p = stack_.participant().base_url() + "/2pc/";
  std::string ops = "[", op_state = "{", prepared = "{", committed = "{";
  for (const char* branch : {"b1", "b2"}) {
    for (const char* op : {"prepare", "commit", "abort"}) {
      ops += std::string(ops.size() > 1 ? "," : "") + R"({"branch_id":")" + branch + R"(","op":")" +
             op + R"(","position":0,"url":")" + p + op +
             R"(","payload":{"sku":"A1","qty":1},"timeout_ms": null,"after_ids":"",)"
             R"("msg_key":"","msg_headers": null})";
      op_state += std::string(op_state.size() > 1 ? "," : "") + "\"" + branch + "/" + op +
                  R"(":{"status":"pending","attempts":0,"last_error":""})";
    }
    prepared += std::string(prepared.size() > 1 ? "," : "") + "\"" + branch +
                R"(/prepare":{"status":"succeeded","attempts":1,"last_error":""})";
    committed += std::string(committed.size() > 1 ? "," : "") + "\"" + branch +
                 R"(/commit":{"status":"succeeded","attempts":1,"last_error":""})";
  }
  ops += "]";
  op_state += "}";
  prepared += "}";
  committed += "}";
  // (No ':' before a letter in the JSON: pgbench would read it as one of its variables.)
  const std::string request =
      R"({"gid":"g","mode":"2pc","wait": true,"branches":[{"id":"b1","prepare":")" + p +
      R"(prepare","commit":")" + p + R"(commit","abort":")" + p +
      R"(abort","payload":{"sku":"A1","qty":1}},{"id":"b2","prepare":")" + p +
      R"(prepare","commit":")" + p + R"(commit","abort":")" + p +
      R"(abort","payload":{"sku":"A1","qty":1}}]})";
  auto transition = [](const std::string& from, const std::string& to, const std::string& reason,
                       const std::string& states) {
    return "WITH c AS (UPDATE treaty.transactions SET status = '" + to + "', reason = '" + reason +
           "', updated_at = now(), next_attempt_at = now(), op_state = op_state || '" + states +
           "' WHERE gid = 'g' || :g AND status = '" + from +
           "' RETURNING gid) INSERT INTO treaty.decision_log (gid, from_status, to_status, "
           "reason, at) SELECT gid, '" +
           from + "', '" + to + "', '" + reason + "', now() FROM c;\n";
  };
  auto r = RunPgBench(
      "ceiling",
      "\\set g random(1, 9000000000000000)\n"
      "WITH t AS (INSERT INTO treaty.transactions (gid, mode, status, request, request_digest, "
      "submitted, deadline, next_attempt_at, owner, lease_until, created_at, updated_at, ops, "
      "op_state) VALUES ('g' || :g, '2pc', 'active', '" +
          request +
          "', 'digest', true, "
          "now() + interval '30s', now(), 'bench', now() + interval '30s', now(), now(), '" +
          ops + "', '" + op_state +
          "') ON CONFLICT (gid) DO NOTHING RETURNING gid) "
          "INSERT INTO treaty.decision_log (gid, from_status, to_status, reason, at) "
          "SELECT gid, NULL, 'active', 'begun with 2 branches', now() FROM t;\n" +
          transition("active", "committing", "all 2 branches prepared", prepared) +
          transition("committing", "committed", "all 2 branches committed", committed),
      {"-c", std::to_string(clients), "-j", std::to_string(std::min(clients, 2)), "-T",
       std::to_string(MeasureSeconds())},
      clients);
  // Nothing else in this database needs the schema.
  s = stack_.pg().Execute("ceiling", "DROP SCHEMA treaty CASCADE");
  if (!s.ok()) return s;
  return r;
}

Result<Object::Ptr> PgCeilings::OutboxSqlAlone() {
  constexpr int kSessions = 2;
  Say("PostgreSQL alone: marking and reading " + std::to_string(o_.outbox_rows) +
      " outbox rows, 500 at a time, " + std::to_string(kSessions) + " sessions");
  const std::string schema = std::regex_replace(std::string(participant::Outbox::SchemaSql()),
                                                std::regex("treaty_outbox"), "floor_outbox");
  Status s = stack_.pg().Execute("outbox", "DROP TABLE IF EXISTS floor_outbox;" + schema);
  if (!s.ok()) return s;
  s = stack_.PreloadOutbox("floor_outbox", o_.outbox_rows);
  if (!s.ok()) return s;
  const int64_t batches = std::max<int64_t>(1, o_.outbox_rows / 500 / kSessions);
  auto r = RunPgBench(
      "outbox",
      // Sessions 0 and 1 (pgbench's client_id) take the even and the odd ids.
      "WITH h AS (SELECT id FROM floor_outbox WHERE status = 'pending' AND id % " +
          std::to_string(kSessions) +
          " = :client_id ORDER BY id LIMIT 500) "
          "UPDATE floor_outbox o SET status = 'sent', sent_at = now(), attempts = attempts + 1 "
          "FROM h WHERE o.id = h.id RETURNING o.id, o.event_id, o.aggregate_key, o.topic, "
          "coalesce(o.key, o.aggregate_id), o.payload::text, o.headers::text, o.event_type;\n",
      {"-c", std::to_string(kSessions), "-j", std::to_string(kSessions), "-t",
       std::to_string(batches)},
      kSessions,
      // As the relay's sessions (outbox/relay.cc): the head of the pending index, not a scan.
      "-c enable_seqscan=off -c enable_bitmapscan=off");
  if (!r.ok()) return r;
  Object::Ptr out = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  out->set("sessions", kSessions);
  out->set("rows", batches * 500 * kSessions);
  out->set("per_second", 500.0 * (*r)->getValue<double>("tps"));
  s = stack_.pg().Execute("outbox", "DROP TABLE floor_outbox");
  if (!s.ok()) return s;
  return out;
}

Result<Object::Ptr> PgCeilings::WalDecodeAlone(const std::string& database, const std::string& slot,
                                               const std::string& end_lsn, int64_t events) {
  Say("PostgreSQL alone decoding " + std::to_string(events) + " events (pg_recvlogical, slot " +
      slot + ")");
  auto dir = harness::TempDir::Create("recvlogical");
  if (!dir.ok()) return dir.status();
  auto started = std::chrono::steady_clock::now();
  auto p = Process::Start(ProcessSpec{
      .name = "pg_recvlogical",
      .argv = {PgBinDir() + "/pg_recvlogical", "-d", stack_.pg().ConnectionString(database),
               "--slot", slot, "--start", "--no-loop", "--endpos", end_lsn, "-o", "proto_version=1",
               "-o", "publication_names=treaty_outbox", "-o", "messages=true", "-f", "/dev/null"},
      .log_path = dir->File("recvlogical.log")});
  if (!p.ok()) return p.status();
  auto code = (*p)->Wait(std::chrono::minutes(10));
  if (!code.ok() || *code != 0)
    return Status::Internal("pg_recvlogical failed: " + (*p)->ReadLog());
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  Object::Ptr r = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  r->set("events", events);
  r->set("seconds", seconds);
  r->set("per_second", static_cast<double>(events) / seconds);
  std::fprintf(stderr, "    decoded in %.2f s (%.0f/s)\n", seconds,
               static_cast<double>(events) / seconds);
  return r;
}

int PgCeilings::MeasureSeconds() const {
  return static_cast<int>(
      std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(o_.measure).count()));
}

Result<Object::Ptr> PgCeilings::RunPgBench(const std::string& database, const std::string& script,
                                           const std::vector<std::string>& how, int clients,
                                           const std::string& pgoptions) {
  auto dir = harness::TempDir::Create("pgbench");
  if (!dir.ok()) return dir.status();
  std::ofstream(dir->File("tx.sql")) << script;
  std::vector<std::string> argv = {PgBinDir() + "/pgbench",
                                   "-n",
                                   "-M",
                                   "prepared",
                                   "-h",
                                   "127.0.0.1",
                                   "-p",
                                   std::to_string(stack_.pg().port()),
                                   "-U",
                                   "postgres"};
  argv.insert(argv.end(), how.begin(), how.end());
  argv.insert(argv.end(), {"-f", dir->File("tx.sql"), database});
  ProcessSpec spec{
      .name = "pgbench", .argv = argv, .log_path = dir->File("pgbench.log"), .pipe_stdout = true};
  if (!pgoptions.empty()) spec.env.emplace_back("PGOPTIONS", pgoptions);
  auto p = Process::Start(std::move(spec));
  if (!p.ok()) return p.status();
  std::string out;
  while (auto line = (*p)->ReadLine(std::chrono::minutes(10))) out += *line + "\n";
  auto code = (*p)->Wait(std::chrono::seconds(30));
  std::smatch m;
  if (!code.ok() || *code != 0 || !std::regex_search(out, m, std::regex(R"(tps = ([0-9.]+))"))) {
    return Status::Internal("pgbench failed: " + out + (*p)->ReadLog());
  }
  Object::Ptr r = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  r->set("clients", clients);
  r->set("tps", std::stod(m[1]));
  std::smatch lat;
  if (std::regex_search(out, lat, std::regex(R"(latency average = ([0-9.]+) ms)"))) {
    r->set("latency_avg_ms", std::stod(lat[1]));
  }
  std::fprintf(stderr, "    %.0f/s\n", std::stod(m[1]));
  return r;
}

}  // namespace treaty::bench
