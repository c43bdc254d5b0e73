// treaty-bench: what scripts/bench runs.
//
//   treaty-bench run [--quick|--smoke] --out FILE.json --markdown FILE.md [--readme README.md]
//       starts durable PostgreSQL, the dev broker, the no-op participant and treatyd, measures
//       every figure of bench/README.md and writes them
//   treaty-bench load --treatyd URL --participant URL --mode M [--clients N] [--branches B]
//                     [--warmup S] [--seconds S] [--run-id ID]
//       one closed-loop load run; prints one JSON line
//   treaty-bench serve
//       starts the same servers as run and prints their addresses (one JSON line), then keeps
//       them up until stdin closes: for profiling one mode with load and perf by hand
//   treaty-bench produce --bootstrap HOST:PORT [--messages N] [--size BYTES]
//       the raw librdkafka produce rate (idempotent, acks=all, as treatyd and the relay produce)

#include <Poco/DateTimeFormatter.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/JSON/Stringifier.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Timestamp.h>
#include <librdkafka/rdkafka.h>
#include <sys/utsname.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "bench/load.h"
#include "common/http/http_client.h"
#include "coordinator/store/migrations.h"
#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/dev_broker.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/service.h"
#include "integration-tests/harness/temp_dir.h"
#include "outbox/outbox.h"

namespace treaty::bench {
namespace {

using harness::DevBroker;
using harness::PgCluster;
using harness::Process;
using harness::ProcessSpec;
using harness::Service;
using harness::ServiceSpec;
using Poco::JSON::Array;
using Poco::JSON::Object;

// "--key value" pairs and bare "--flag"s after the subcommand.
std::map<std::string, std::string> Flags(int argc, char** argv, int first) {
  std::map<std::string, std::string> flags;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) continue;
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      flags[a.substr(2)] = argv[++i];
    } else {
      flags[a.substr(2)] = "true";
    }
  }
  return flags;
}

int Fail(const std::string& what) {
  std::cerr << "treaty-bench: " << what << "\n";
  return 1;
}

// ---- produce -----------------------------------------------------------------------------------

struct ProduceResult {
  double rate = 0;
  int64_t failed = 0;
};

void CountFailure(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  if (m->err) ++*static_cast<std::atomic<int64_t>*>(opaque);
}

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
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  rd_kafka_destroy(rk);
  return {static_cast<double>(messages) / seconds, failed.load()};
}

// ---- run ---------------------------------------------------------------------------------------

struct RunOptions {
  Duration warmup, measure;
  std::vector<int> client_counts;
  std::vector<int> branch_counts;
  int clients = 32;
  int64_t outbox_rows, backlog, produce_messages;
  std::string kind;  // "full", "quick", "smoke"
};

RunOptions OptionsFor(const std::string& kind) {
  if (kind == "smoke") {
    return {std::chrono::milliseconds(300), std::chrono::seconds(1), {1, 8}, {2, 4}, 8,
            2000, 2000, 5000, kind};
  }
  if (kind == "quick") {
    return {std::chrono::seconds(1), std::chrono::seconds(4), {1, 8, 32, 128}, {2, 4, 8}, 32,
            50000, 20000, 100000, kind};
  }
  return {std::chrono::seconds(3), std::chrono::seconds(15), {1, 8, 32, 128}, {2, 4, 8}, 32,
          200000, 100000, 500000, kind};
}

std::string Say(const std::string& line) {
  std::cerr << "==> " << line << std::endl;
  return line;
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

Result<int64_t> RssKib(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return Status::NotFound(field + " not found for pid " + std::to_string(pid));
}

class BenchRun {
 public:
  explicit BenchRun(RunOptions o) : o_(std::move(o)) {}

  // Keeps the servers up until stdin closes, after printing where they are.
  Status Serve() {
    if (Status s = StartServers(); !s.ok()) return s;
    std::cout << "{\"treatyd\":\"" << treatyd_->base_url() << "\",\"treatyd_pid\":"
              << treatyd_->process().pid() << ",\"participant\":\"" << participant_->base_url()
              << "\",\"store\":\"" << pg_->Url("treaty") << "\",\"kafka\":\""
              << broker_->bootstrap() << "\"}" << std::endl;
    std::string line;
    while (std::getline(std::cin, line)) {
    }
    return Status::Ok();
  }

  Status Run(Object::Ptr out) {
    if (Status s = StartServers(); !s.ok()) return s;
    out->set("machine", Machine());
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
    Say("raw produce: " + std::to_string(o_.produce_messages) + " messages to the dev broker");
    ProduceResult produced = Produce(broker_->bootstrap(), o_.produce_messages, 100);
    Object::Ptr produce = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
    produce->set("messages", o_.produce_messages);
    produce->set("per_second", produced.rate);
    produce->set("failed", produced.failed);
    ceilings->set("raw_produce", produce);
    Array::Ptr pgbench = new Array();
    for (int clients : o_.client_counts) {
      auto r = PgBench(clients);
      if (!r.ok()) return r.status();
      pgbench->add(*r);
    }
    ceilings->set("pgbench", pgbench);
    auto writes = PgBenchTreatyWrites(o_.clients);
    if (!writes.ok()) return writes.status();
    ceilings->set("pgbench_treaty_writes", *writes);
    auto outbox_sql = OutboxSqlAlone();
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
    auto hwm = RssKib(treatyd_->process().pid(), "VmHWM");
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
    return Status::Ok();
  }

  // 2PC at 8 clients while 1,500 clients hold connections open saying nothing and 200 more
  // trickle a header byte every 500 ms (#25): what valid clients see during such an attack.
  Result<Object::Ptr> UnderAttack() {
    constexpr int kIdle = 1500, kSlow = 200, kClients = 8;
    Say("under attack: 2PC, " + std::to_string(kClients) + " clients, beside " +
        std::to_string(kIdle) + " idle and " + std::to_string(kSlow) + " trickling connections");
    const std::string url = treatyd_->base_url();
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

 private:
  static constexpr const char* kParticipantPath = TREATY_BENCH_PARTICIPANT_PATH;

  Status StartServers() {
    Say("starting PostgreSQL (durable: fsync and synchronous_commit on), the dev broker, "
        "the no-op participant and treatyd");
    auto pg = PgCluster::Start(harness::PgClusterOptions{.durable = true, .max_connections = 400});
    if (!pg.ok()) return pg.status();
    pg_ = std::move(*pg);
    for (const char* db : {"treaty", "ceiling", "outbox"}) {
      if (Status s = pg_->CreateDatabase(db); !s.ok()) return s;
    }
    auto broker = DevBroker::Start();
    if (!broker.ok()) return broker.status();
    broker_ = std::move(*broker);
    auto participant = Service::Start(ServiceSpec{.name = "bench-participant",
                                                  .binary = kParticipantPath,
                                                  .config_yaml = "listen: 127.0.0.1:0\nthreads: 256\n"});
    if (!participant.ok()) return participant.status();
    participant_ = std::move(*participant);
    return StartTreatyd();
  }

  Status StartTreatyd() {
    auto t = Service::Start(ServiceSpec{
        .name = "treatyd",
        .binary = harness::kTreatydPath,
        .config_yaml = "listen: 127.0.0.1:0\nnode_id: bench\n"
                       "store: { url: \"" + pg_->Url("treaty") + "\", pool_size: 32 }\n"
                       "kafka: { bootstrap_servers: \"" + broker_->bootstrap() + "\" }\n"
                       "scheduler: { workers: 32 }\n"
                       // The load generator is one caller: the default per-caller rate limit
                       // (2,000 requests/s) would cap what is measured (msg makes two requests
                       // per transaction).
                       "limits: { rate_per_second: 0 }\n"
                       "log: { level: warn }\n"});
    if (!t.ok()) return t.status();
    treatyd_ = std::move(*t);
    return WaitReady();
  }

  Status WaitReady() {
    bool ready = harness::WaitUntil(
        [&] {
          auto r = http::HttpCall("GET", treatyd_->base_url() + "/readyz");
          return r.ok() && r->status == 200;
        },
        std::chrono::seconds(60));
    return ready ? Status::Ok() : Status::Unavailable("treatyd did not become ready");
  }

  Result<Object::Ptr> Load(const std::string& mode, int clients, int branches) {
    Say("load: " + mode + ", " + std::to_string(clients) + " clients, " +
        std::to_string(branches) + " branches");
    auto dir = harness::TempDir::Create("load");
    if (!dir.ok()) return dir.status();
    auto p = Process::Start(ProcessSpec{
        .name = "load",
        .argv = {self_, "load", "--treatyd", treatyd_->base_url(), "--participant",
                 participant_->base_url(), "--mode", mode, "--clients", std::to_string(clients),
                 "--branches", std::to_string(branches), "--warmup",
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(o_.warmup).count()) + "ms",
                 "--seconds",
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(o_.measure).count()) + "ms",
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

  Result<Object::Ptr> PgBench(int clients) {
    Say("pgbench: one INSERT and one UPDATE per transaction, " + std::to_string(clients) +
        " clients");
    Status s = pg_->Execute("ceiling",
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

  // What PostgreSQL alone does with treatyd's writes of one 2PC transaction with two branches:
  // the row and its first log row, the decision, the end, each with its log row and a commit of
  // its own, in the store's own tables (schema of coordinator/store/migrations.cc) with rows of
  // the bench's sizes. Simplified from PgTransactionStore's statements: not batched across
  // transactions (finding 13 of docs/performance.md), without their row locks in gid order,
  // JSON decoding of a batch and checks of the mode's moves. An estimate of what the records
  // cost, not a bound.
  Result<Object::Ptr> PgBenchTreatyWrites(int clients) {
    Say("pgbench: treatyd's three writes of a 2PC transaction, " + std::to_string(clients) +
        " clients");
    std::string schema = "DROP SCHEMA IF EXISTS treaty CASCADE; CREATE SCHEMA treaty;";
    for (const store::Migration& m : store::Migrations()) schema += std::string(m.sql) + ";";
    Status s = pg_->Execute("ceiling", schema);
    if (!s.ok()) return s;
    const std::string p = participant_->base_url() + "/2pc/";
    std::string ops = "[", op_state = "{", prepared = "{", committed = "{";
    for (const char* branch : {"b1", "b2"}) {
      for (const char* op : {"prepare", "commit", "abort"}) {
        ops += std::string(ops.size() > 1 ? "," : "") + R"({"branch_id":")" + branch +
               R"(","op":")" + op + R"(","position":0,"url":")" + p + op +
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
      return "WITH c AS (UPDATE treaty.transactions SET status = '" + to + "', reason = '" +
             reason + "', updated_at = now(), next_attempt_at = now(), op_state = op_state || '" +
             states + "' WHERE gid = 'g' || :g AND status = '" + from +
             "' RETURNING gid) INSERT INTO treaty.decision_log (gid, from_status, to_status, "
             "reason, at) SELECT gid, '" + from + "', '" + to + "', '" + reason +
             "', now() FROM c;\n";
    };
    auto r = RunPgBench(
        "ceiling",
        "\\set g random(1, 9000000000000000)\n"
        "WITH t AS (INSERT INTO treaty.transactions (gid, mode, status, request, request_digest, "
        "submitted, deadline, next_attempt_at, owner, lease_until, created_at, updated_at, ops, "
        "op_state) VALUES ('g' || :g, '2pc', 'active', '" + request + "', 'digest', true, "
        "now() + interval '30s', now(), 'bench', now() + interval '30s', now(), now(), '" + ops +
        "', '" + op_state + "') ON CONFLICT (gid) DO NOTHING RETURNING gid) "
        "INSERT INTO treaty.decision_log (gid, from_status, to_status, reason, at) "
        "SELECT gid, NULL, 'active', 'begun with 2 branches', now() FROM t;\n" +
            transition("active", "committing", "all 2 branches prepared", prepared) +
            transition("committing", "committed", "all 2 branches committed", committed),
        {"-c", std::to_string(clients), "-j", std::to_string(std::min(clients, 2)), "-T",
         std::to_string(MeasureSeconds())},
        clients);
    // Nothing else in this database needs the schema.
    s = pg_->Execute("ceiling", "DROP SCHEMA treaty CASCADE");
    if (!s.ok()) return s;
    return r;
  }

  // What PostgreSQL alone does with the relay's work: as many sessions as the relay has
  // workers (2, its default), each marking sent and reading back the head of its half of the
  // pending rows, 500 at a time, in one statement, over a copy of the outbox the relay drains.
  // No Kafka, no advisory locks, one round trip a batch: less SQL than any relay that records
  // each row needs.
  Result<Object::Ptr> OutboxSqlAlone() {
    constexpr int kSessions = 2;
    Say("PostgreSQL alone: marking and reading " + std::to_string(o_.outbox_rows) +
        " outbox rows, 500 at a time, " + std::to_string(kSessions) + " sessions");
    const std::string schema = std::regex_replace(std::string(participant::Outbox::SchemaSql()),
                                                  std::regex("treaty_outbox"), "floor_outbox");
    Status s = pg_->Execute("outbox", "DROP TABLE IF EXISTS floor_outbox;" + schema);
    if (!s.ok()) return s;
    s = PreloadOutbox("floor_outbox");
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
    s = pg_->Execute("outbox", "DROP TABLE floor_outbox");
    if (!s.ok()) return s;
    return out;
  }

  int MeasureSeconds() const {
    return static_cast<int>(std::max<int64_t>(
        1, std::chrono::duration_cast<std::chrono::seconds>(o_.measure).count()));
  }

  // Runs pgbench with `script` on `database` (its sessions' settings in `pgoptions`, as
  // PGOPTIONS) and returns its transactions per second (and average latency) as
  // {"clients", "tps", "latency_avg_ms"}.
  Result<Object::Ptr> RunPgBench(const std::string& database, const std::string& script,
                                 const std::vector<std::string>& how, int clients,
                                 const std::string& pgoptions = "") {
    auto dir = harness::TempDir::Create("pgbench");
    if (!dir.ok()) return dir.status();
    std::ofstream(dir->File("tx.sql")) << script;
    std::vector<std::string> argv = {PgBinDir() + "/pgbench", "-n", "-M", "prepared", "-h",
                                     "127.0.0.1", "-p", std::to_string(pg_->port()), "-U",
                                     "postgres"};
    argv.insert(argv.end(), how.begin(), how.end());
    argv.insert(argv.end(), {"-f", dir->File("tx.sql"), database});
    ProcessSpec spec{.name = "pgbench",
                     .argv = argv,
                     .log_path = dir->File("pgbench.log"),
                     .pipe_stdout = true};
    if (!pgoptions.empty()) spec.env.emplace_back("PGOPTIONS", pgoptions);
    auto p = Process::Start(std::move(spec));
    if (!p.ok()) return p.status();
    std::string out;
    while (auto line = (*p)->ReadLine(std::chrono::minutes(10))) out += *line + "\n";
    auto code = (*p)->Wait(std::chrono::seconds(30));
    std::smatch m;
    if (!code.ok() || *code != 0 ||
        !std::regex_search(out, m, std::regex(R"(tps = ([0-9.]+))"))) {
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

  // Unfinished transactions left in the store (as after a crash with a backlog): treatyd is
  // restarted over them; how fast it finishes them all and how much memory that takes.
  Result<Object::Ptr> Backlog() {
    Say("backlog: " + std::to_string(o_.backlog) +
        " committing 2PC transactions in the store, treatyd restarted over them");
    if (auto s = treatyd_->Stop(); !s.ok()) return s.status();
    std::string n = std::to_string(o_.backlog);
    std::string url = participant_->base_url() + "/2pc/";
    Status s = pg_->Execute(
        "treaty",
        "INSERT INTO treaty.transactions (gid, mode, status, request, request_digest, submitted, "
        "reason, deadline, next_attempt_at, ops, op_state) SELECT 'backlog-' || g, '2pc', "
        "'committing', '{}', 'bench', true, 'all 2 branches prepared', "
        "now() + interval '1 hour', now(), o.ops, o.op_state FROM generate_series(1, " + n + ") g, "
        "(SELECT jsonb_agg(jsonb_build_object('branch_id', 'b' || b, 'op', op, 'position', b, "
        "'url', '" + url + "' || op, 'payload', '{}'::jsonb, 'after_ids', '')) AS ops, "
        "jsonb_object_agg('b' || b || '/' || op, jsonb_build_object('status', CASE WHEN "
        "op = 'prepare' THEN 'succeeded' ELSE 'pending' END, 'attempts', CASE WHEN op = "
        "'prepare' THEN 1 ELSE 0 END)) AS op_state FROM generate_series(1, 2) b, "
        "unnest(ARRAY['prepare', 'commit', 'abort']) op) o");
    if (!s.ok()) return s;
    auto started = std::chrono::steady_clock::now();
    if (Status r = treatyd_->Restart(); !r.ok()) return r;
    if (Status r = WaitReady(); !r.ok()) return r;
    int64_t peak_kib = 0;
    bool drained = harness::WaitUntil(
        [&] {
          if (auto rss = RssKib(treatyd_->process().pid(), "VmRSS"); rss.ok()) {
            peak_kib = std::max(peak_kib, *rss);
          }
          // EXISTS, as for the outbox below: the unfinished index's head, not a count.
          auto left = pg_->QueryValue("treaty",
                                      "SELECT EXISTS (SELECT 1 FROM treaty.transactions WHERE "
                                      "status = 'committing' AND gid LIKE 'backlog-%')");
          return left.ok() && *left == "f";
        },
        std::chrono::minutes(10), std::chrono::milliseconds(100));
    if (!drained) return Status::DeadlineExceeded("the backlog was not finished in 10 minutes");
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    auto hwm = RssKib(treatyd_->process().pid(), "VmHWM");
    Object::Ptr r = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
    r->set("transactions", o_.backlog);
    r->set("seconds", seconds);
    r->set("per_second", static_cast<double>(o_.backlog) / seconds);
    r->set("peak_rss_mib", static_cast<double>(hwm.ok() ? *hwm : peak_kib) / 1024.0);
    std::fprintf(stderr, "    finished in %.1f s (%.0f/s), peak RSS %.1f MiB\n", seconds,
                 static_cast<double>(o_.backlog) / seconds, r->getValue<double>("peak_rss_mib"));
    return r;
  }

  // The outbox relay draining preloaded rows to Kafka.
  // The outbox rows the relay drains: 1,000 aggregates, in `table` (the kit's schema).
  Status PreloadOutbox(const std::string& table) {
    return pg_->Execute(
        "outbox",
        "INSERT INTO " + table +
            " (event_id, aggregate_type, aggregate_id, event_type, topic, key, payload) "
            "SELECT 'e-' || g, 'order', (g % 1000)::text, 'OrderPlaced', 'bench.outbox', "
            "(g % 1000)::text, jsonb_build_object('order', g, 'sku', 'A1', 'qty', 1) "
            "FROM generate_series(1, " +
            std::to_string(o_.outbox_rows) + ") g");
  }

  Result<Object::Ptr> Outbox() {
    Say("outbox: " + std::to_string(o_.outbox_rows) + " rows drained by treaty-relay");
    Status s = pg_->Execute("outbox", participant::Outbox::SchemaSql());
    if (!s.ok()) return s;
    s = PreloadOutbox("treaty_outbox");
    if (!s.ok()) return s;
    auto started = std::chrono::steady_clock::now();
    auto relay = Service::Start(ServiceSpec{
        .name = "treaty-relay",
        .binary = harness::kRelayPath,
        .config_yaml = "listen: 127.0.0.1:0\n"
                       "database: { url: \"" + pg_->Url("outbox") + "\" }\n"
                       "kafka: { bootstrap_servers: \"" + broker_->bootstrap() + "\" }\n"
                       "log: { level: warn }\n"});
    if (!relay.ok()) return relay.status();
    bool drained = harness::WaitUntil(
        [&] {
          // EXISTS reads the pending index's head; a count(*) of a large backlog every 100 ms
          // (parallel workers and all) took CPU from the relay being measured.
          auto left = pg_->QueryValue(
              "outbox", "SELECT EXISTS (SELECT 1 FROM treaty_outbox WHERE status = 'pending')");
          return left.ok() && *left == "f";
        },
        std::chrono::minutes(10), std::chrono::milliseconds(100));
    if (!drained) return Status::DeadlineExceeded("the outbox was not drained in 10 minutes");
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    Object::Ptr r = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
    r->set("rows", o_.outbox_rows);
    r->set("seconds", seconds);
    r->set("per_second", static_cast<double>(o_.outbox_rows) / seconds);
    std::fprintf(stderr, "    drained in %.1f s (%.0f/s)\n", seconds,
                 static_cast<double>(o_.outbox_rows) / seconds);
    return r;
  }

  Object::Ptr Machine() {
    Object::Ptr m = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line, model;
    while (std::getline(cpuinfo, line)) {
      if (line.rfind("model name", 0) == 0) {
        model = line.substr(line.find(':') + 2);
        break;
      }
    }
    m->set("cpu", model);
    m->set("cores", static_cast<int>(std::thread::hardware_concurrency()));
    std::ifstream meminfo("/proc/meminfo");
    std::getline(meminfo, line);
    std::smatch kb;
    if (std::regex_search(line, kb, std::regex(R"(([0-9]+) kB)"))) {
      m->set("memory_gib", std::stod(kb[1]) / 1024.0 / 1024.0);
    }
    struct utsname u {};
    if (::uname(&u) == 0) m->set("kernel", std::string(u.sysname) + " " + u.release);
    auto version = pg_->QueryValue("postgres", "SHOW server_version");
    m->set("postgresql", version.ok() ? *version : std::string("?"));
    m->set("postgresql_durability", "fsync=on, synchronous_commit=on");
    m->set("librdkafka", std::string(rd_kafka_version_str()));
    m->set("kafka", "treaty-devbroker (librdkafka mock cluster, 1 broker, loopback)");
    m->set("date", Poco::DateTimeFormatter::format(Poco::Timestamp(), "%Y-%m-%d"));
    m->set("run", o_.kind);
    return m;
  }

 public:
  std::string self_;

 private:
  RunOptions o_;
  int runs_ = 0;
  std::unique_ptr<PgCluster> pg_;
  std::unique_ptr<DevBroker> broker_;
  std::unique_ptr<Service> participant_;
  std::unique_ptr<Service> treatyd_;
};

// ---- the report ----------------------------------------------------------------------------------

double Num(const Object::Ptr& o, const std::string& k) { return o->getValue<double>(k); }

std::string Fixed(double v, int digits = 0) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string Markdown(const Object::Ptr& doc) {
  Object::Ptr m = doc->getObject("machine");
  Object::Ptr r = doc->getObject("results");
  Object::Ptr ceilings = r->getObject("ceilings");
  std::ostringstream md;
  md << "Measured " << m->getValue<std::string>("date") << " by `scripts/bench` ("
     << m->getValue<std::string>("run") << " run) on " << m->getValue<int>("cores") << " cores ("
     << m->getValue<std::string>("cpu") << "), PostgreSQL " << m->getValue<std::string>("postgresql")
     << " with " << m->getValue<std::string>("postgresql_durability")
     << ", the dev broker, and a participant that answers at once. Every transaction waits for "
        "its outcome (closed loop). Regenerated from `bench/results.json`; do not edit.\n\n";

  Array::Ptr pgbench = ceilings->getArray("pgbench");
  auto pg_at = [&](int clients) {
    for (size_t i = 0; i < pgbench->size(); ++i) {
      if (pgbench->getObject(i)->getValue<int>("clients") == clients) {
        return Num(pgbench->getObject(i), "tps");
      }
    }
    return 0.0;
  };
  Array::Ptr modes = r->getArray("modes");
  double twopc = Num(modes->getObject(0), "tps");
  int clients = modes->getObject(0)->getValue<int>("clients");
  md << "| mode (" << clients << " clients) | tx/s | p50 ms | p99 ms | max ms | vs 2PC |\n"
     << "|---|---:|---:|---:|---:|---:|\n";
  for (size_t i = 0; i < modes->size(); ++i) {
    Object::Ptr x = modes->getObject(i);
    std::string mode = x->getValue<std::string>("mode");
    std::string name = mode == "2pc"    ? "2PC, 2 branches"
                       : mode == "tcc"  ? "TCC, 2 branches"
                       : mode == "saga" ? "saga, 3 steps"
                                        : "msg, 1 Kafka message";
    md << "| " << name << " | " << Fixed(Num(x, "tps")) << " | " << Fixed(Num(x, "p50_ms"), 1)
       << " | " << Fixed(Num(x, "p99_ms"), 1) << " | " << Fixed(Num(x, "max_ms"), 1) << " | "
       << Fixed(100 * Num(x, "tps") / twopc) << "% |\n";
  }
  Object::Ptr produce = ceilings->getObject("raw_produce");
  Object::Ptr outbox = r->getObject("outbox");
  md << "\n| ceiling, same run | per second | Treaty against it |\n|---|---:|---|\n"
     << "| pgbench, 1 INSERT + 1 UPDATE, " << clients << " clients | " << Fixed(pg_at(clients))
     << " | 2PC at " << Fixed(100 * twopc / pg_at(clients)) << "% |\n";
  // Older results.json files lack the PostgreSQL-alone figures.
  if (Object::Ptr writes = ceilings->getObject("pgbench_treaty_writes")) {
    md << "| pgbench, treatyd's 3 writes of a 2PC transaction, " << writes->getValue<int>("clients")
       << " clients | " << Fixed(Num(writes, "tps")) << " | 2PC at "
       << Fixed(100 * twopc / Num(writes, "tps")) << "% |\n";
  }
  md << "| raw HTTP to the participant, " << clients << " clients | "
     << Fixed(Num(ceilings->getObject("raw_http"), "tps")) << " | |\n"
     << "| raw produce to the dev broker | " << Fixed(Num(produce, "per_second"))
     << " | outbox relay at " << Fixed(100 * Num(outbox, "per_second") / Num(produce, "per_second"))
     << "% |\n";
  if (Object::Ptr alone = ceilings->getObject("outbox_sql_alone")) {
    md << "| PostgreSQL alone marking and reading outbox rows, "
       << alone->optValue<int>("sessions", 1) << " sessions | "
       << Fixed(Num(alone, "per_second")) << " | outbox relay at "
       << Fixed(100 * Num(outbox, "per_second") / Num(alone, "per_second")) << "% |\n";
  }
  md << "\n| clients | 2PC tx/s | p99 ms | pgbench tx/s | 2PC / pgbench |\n|---:|---:|---:|---:|---:|\n";
  Array::Ptr sc = r->getArray("scaling_clients");
  for (size_t i = 0; i < sc->size(); ++i) {
    Object::Ptr x = sc->getObject(i);
    int c = x->getValue<int>("clients");
    md << "| " << c << " | " << Fixed(Num(x, "tps")) << " | " << Fixed(Num(x, "p99_ms"), 1)
       << " | " << Fixed(pg_at(c)) << " | " << Fixed(100 * Num(x, "tps") / pg_at(c)) << "% |\n";
  }
  md << "\n| branches (" << clients << " clients) | 2PC tx/s | p99 ms |\n|---:|---:|---:|\n";
  Array::Ptr sb = r->getArray("scaling_branches");
  for (size_t i = 0; i < sb->size(); ++i) {
    Object::Ptr x = sb->getObject(i);
    md << "| " << x->getValue<int>("branches") << " | " << Fixed(Num(x, "tps")) << " | "
       << Fixed(Num(x, "p99_ms"), 1) << " |\n";
  }
  Object::Ptr mem = r->getObject("memory");
  Object::Ptr backlog = mem->getObject("backlog");
  md << "\n| other figures | |\n|---|---:|\n";
  // Older results.json files lack it.
  if (Object::Ptr attack = r->getObject("under_attack")) {
    md << "| 2PC, " << attack->getValue<int>("clients") << " clients, beside "
       << attack->getValue<int>("idle_connections") << " idle and "
       << attack->getValue<int>("trickling_connections") << " trickling connections | "
       << Fixed(Num(attack, "tps")) << " tx/s, p99 " << Fixed(Num(attack, "p99_ms"), 1)
       << " ms |\n";
  }
  md << "| outbox relay: " << outbox->getValue<int64_t>("rows") << " preloaded rows to Kafka | "
     << Fixed(Num(outbox, "per_second")) << " msgs/s (" << Fixed(Num(outbox, "seconds"), 1)
     << " s) |\n"
     << "| treatyd peak RSS, up to " << mem->getValue<int>("max_clients") << " clients | "
     << Fixed(Num(mem, "peak_rss_mib_under_load"), 1) << " MiB |\n"
     << "| recovery: " << backlog->getValue<int64_t>("transactions")
     << " unfinished transactions in the store, treatyd restarted | finished at "
     << Fixed(Num(backlog, "per_second")) << " tx/s, peak RSS "
     << Fixed(Num(backlog, "peak_rss_mib"), 1) << " MiB |\n";
  return md.str();
}

int RunCommand(const std::map<std::string, std::string>& flags, const std::string& self) {
  std::string kind = flags.count("smoke") ? "smoke" : flags.count("quick") ? "quick" : "full";
  if (!flags.count("out") || !flags.count("markdown")) return Fail("run needs --out and --markdown");
  BenchRun run(OptionsFor(kind));
  run.self_ = self;
  Object::Ptr doc = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  Status s = run.Run(doc);
  if (!s.ok()) return Fail(s.message());
  {
    std::ofstream out(flags.at("out"));
    Poco::JSON::Stringifier::stringify(doc, out, 2);
    out << "\n";
  }
  std::ofstream(flags.at("markdown")) << Markdown(doc);
  if (flags.count("readme")) {
    // Only the part between the markers is replaced.
    const std::string begin = "<!-- bench:begin -->", end = "<!-- bench:end -->";
    std::ifstream in(flags.at("readme"));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t b = text.find(begin), e = text.find(end);
    if (b == std::string::npos || e == std::string::npos || e < b) {
      return Fail(flags.at("readme") + " has no " + begin + " ... " + end + " section");
    }
    text = text.substr(0, b + begin.size()) + "\n" + Markdown(doc) + text.substr(e);
    std::ofstream(flags.at("readme")) << text;
  }
  std::cerr << "\n" << Markdown(doc) << "\nwrote " << flags.at("out") << " and "
            << flags.at("markdown") << "\n";
  return 0;
}

}  // namespace
}  // namespace treaty::bench

int main(int argc, char** argv) {
  using namespace treaty::bench;
  if (argc < 2) return Fail("usage: treaty-bench run|load|produce ... (see bench/README.md)");
  std::string cmd = argv[1];
  auto flags = Flags(argc, argv, 2);
  if (cmd == "load") {
    LoadSpec spec;
    spec.treatyd = flags["treatyd"];
    spec.participant = flags["participant"];
    spec.mode = flags.count("mode") ? flags["mode"] : "2pc";
    if (flags.count("clients")) spec.clients = std::stoi(flags["clients"]);
    if (flags.count("branches")) spec.branches = std::stoi(flags["branches"]);
    if (flags.count("warmup")) spec.warmup = treaty::ParseDuration(flags["warmup"]).value_or(spec.warmup);
    if (flags.count("seconds")) spec.measure = treaty::ParseDuration(flags["seconds"]).value_or(spec.measure);
    if (flags.count("run-id")) spec.run_id = flags["run-id"];
    if (spec.participant.empty()) return Fail("load needs --participant");
    std::cout << ToJson(spec, RunLoad(spec)) << std::endl;
    return 0;
  }
  if (cmd == "produce") {
    auto r = Produce(flags["bootstrap"], flags.count("messages") ? std::stoll(flags["messages"]) : 100000,
                     flags.count("size") ? std::stoul(flags["size"]) : 100);
    std::cout << "{\"per_second\":" << r.rate << ",\"failed\":" << r.failed << "}" << std::endl;
    return r.failed == 0 ? 0 : 1;
  }
  if (cmd == "serve") {
    BenchRun run(OptionsFor("smoke"));
    treaty::Status s = run.Serve();
    return s.ok() ? 0 : Fail(s.message());
  }
  if (cmd == "run") {
    std::string self = std::filesystem::canonical("/proc/self/exe").string();
    return RunCommand(flags, self);
  }
  return Fail("unknown command " + cmd);
}
