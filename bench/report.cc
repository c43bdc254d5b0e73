#include "bench/report.h"

#include <Poco/DateTimeFormatter.h>
#include <Poco/JSON/Array.h>
#include <Poco/Timestamp.h>
#include <librdkafka/rdkafka.h>
#include <sys/utsname.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace treaty::bench {

using Poco::JSON::Array;
using Poco::JSON::Object;

namespace {

double Num(const Object::Ptr& o, const std::string& k) { return o->getValue<double>(k); }

std::string Fixed(double v, int digits = 0) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

Object::Ptr MachineDescription(harness::PgCluster& pg, const std::string& kind) {
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
  auto version = pg.QueryValue("postgres", "SHOW server_version");
  m->set("postgresql", version.ok() ? *version : std::string("?"));
  m->set("postgresql_durability", "fsync=on, synchronous_commit=on, wal_level=logical");
  m->set("librdkafka", std::string(rd_kafka_version_str()));
  m->set("kafka", "treaty-devbroker (librdkafka mock cluster, 1 broker, loopback)");
  m->set("date", Poco::DateTimeFormatter::format(Poco::Timestamp(), "%Y-%m-%d"));
  m->set("run", kind);
  return m;
}

Object::Ptr Targets(const Object::Ptr& r) {
  Object::Ptr t = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  Object::Ptr ceilings = r->getObject("ceilings");
  Array::Ptr modes = r->getArray("modes");
  if (!ceilings || !modes || modes->size() == 0) return t;
  auto find = [](const Array::Ptr& a, int clients) -> Object::Ptr {
    for (size_t i = 0; a && i < a->size(); ++i) {
      if (a->getObject(i)->getValue<int>("clients") == clients) return a->getObject(i);
    }
    return nullptr;
  };
  Object::Ptr twopc = modes->getObject(0);
  const int clients = twopc->getValue<int>("clients");
  Object::Ptr pg = find(ceilings->getArray("pgbench"), clients);
  Object::Ptr http = ceilings->getObject("raw_http");
  if (pg && http) {
    const double limit = 1.0 / (1.0 / Num(pg, "tps") + 5.0 / Num(http, "tps"));
    t->set("clients", clients);
    t->set("limit_2pc", limit);
    t->set("2pc_tps", Num(twopc, "tps"));
    t->set("2pc_vs_limit", Num(twopc, "tps") / limit);
  }
  Object::Ptr one = find(r->getArray("scaling_clients"), 1);
  Object::Ptr pg_one = find(ceilings->getArray("pgbench"), 1);
  Object::Ptr http_one = ceilings->getObject("raw_http_1client");
  if (one && pg_one && http_one && pg_one->has("latency_avg_ms")) {
    const double floor = 5 * Num(http_one, "p50_ms") + Num(pg_one, "latency_avg_ms");
    t->set("p50_1client", Num(one, "p50_ms"));
    t->set("p50_floor_1client", floor);
    t->set("p50_1client_vs_floor", Num(one, "p50_ms") / floor);
  }
  if (Object::Ptr mem = r->getObject("memory")) {
    t->set("treatyd_peak_rss_mib", Num(mem, "peak_rss_mib_under_load"));
    t->set("treatyd_peak_rss_clients", mem->getValue<int>("max_clients"));
  }
  Array::Ptr wal = r->getArray("outbox_wal");
  Object::Ptr polling = r->getObject("outbox");
  for (size_t i = 0; wal && i < wal->size(); ++i) {
    Object::Ptr w = wal->getObject(i);
    const std::string suffix = w->getValue<std::string>("write") == "row_deleted"
                                   ? ""
                                   : "_" + w->getValue<std::string>("write");
    const double relay = Num(w->getObject("relay"), "per_second");
    const double alone = Num(w->getObject("decode_alone"), "per_second");
    t->set("relay_wal" + suffix, relay);
    t->set("wal_decode_alone" + suffix, alone);
    t->set("relay_wal_vs_decode" + suffix, relay / alone);
    if (polling) t->set("relay_wal_vs_polling" + suffix, relay / Num(polling, "per_second"));
  }
  return t;
}

std::string Markdown(const Object::Ptr& doc) {
  Object::Ptr m = doc->getObject("machine");
  Object::Ptr r = doc->getObject("results");
  Object::Ptr ceilings = r->getObject("ceilings");
  std::ostringstream md;
  md << "Measured " << m->getValue<std::string>("date") << " by `scripts/bench` ("
     << m->getValue<std::string>("run") << " run) on " << m->getValue<int>("cores") << " cores ("
     << m->getValue<std::string>("cpu") << "), PostgreSQL "
     << m->getValue<std::string>("postgresql") << " with "
     << m->getValue<std::string>("postgresql_durability")
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
       << alone->optValue<int>("sessions", 1) << " sessions | " << Fixed(Num(alone, "per_second"))
       << " | outbox relay at " << Fixed(100 * Num(outbox, "per_second") / Num(alone, "per_second"))
       << "% |\n";
  }
  md << "\n| clients | 2PC tx/s | p99 ms | pgbench tx/s | 2PC / pgbench "
        "|\n|---:|---:|---:|---:|---:|\n";
  Array::Ptr sc = r->getArray("scaling_clients");
  for (size_t i = 0; i < sc->size(); ++i) {
    Object::Ptr x = sc->getObject(i);
    int c = x->getValue<int>("clients");
    md << "| " << c << " | " << Fixed(Num(x, "tps")) << " | " << Fixed(Num(x, "p99_ms"), 1) << " | "
       << Fixed(pg_at(c)) << " | " << Fixed(100 * Num(x, "tps") / pg_at(c)) << "% |\n";
  }
  md << "\n| branches (" << clients << " clients) | 2PC tx/s | p99 ms |\n|---:|---:|---:|\n";
  Array::Ptr sb = r->getArray("scaling_branches");
  for (size_t i = 0; i < sb->size(); ++i) {
    Object::Ptr x = sb->getObject(i);
    md << "| " << x->getValue<int>("branches") << " | " << Fixed(Num(x, "tps")) << " | "
       << Fixed(Num(x, "p99_ms"), 1) << " |\n";
  }
  // Older results.json files lack them.
  if (Object::Ptr t = r->getObject("targets"); t && t->has("limit_2pc")) {
    md << "\n| target (#23), same run | measured | limit | ratio | goal |\n"
          "|---|---:|---:|---:|---|\n";
    md << "| 2PC tx/s, " << t->getValue<int>("clients")
       << " clients, against 1 / (1/pgbench + 5/raw HTTP) | " << Fixed(Num(t, "2pc_tps")) << " | "
       << Fixed(Num(t, "limit_2pc")) << " | " << Fixed(Num(t, "2pc_vs_limit"), 2) << " | ≥ 0.5 |\n";
    if (t->has("p50_1client")) {
      md << "| 2PC p50 ms, 1 client, against 5 raw HTTP round trips + 1 pgbench commit | "
         << Fixed(Num(t, "p50_1client"), 2) << " | " << Fixed(Num(t, "p50_floor_1client"), 2)
         << " | " << Fixed(Num(t, "p50_1client_vs_floor"), 2) << " | ≤ 2 |\n";
    }
    if (t->has("treatyd_peak_rss_mib")) {
      md << "| treatyd peak RSS MiB, up to " << t->getValue<int>("treatyd_peak_rss_clients")
         << " clients | " << Fixed(Num(t, "treatyd_peak_rss_mib"), 1) << " | 64 | "
         << Fixed(Num(t, "treatyd_peak_rss_mib") / 64, 2) << " | < 1 |\n";
    }
    for (const char* suffix : {"", "_message"}) {
      const std::string s(suffix);
      if (!t->has("relay_wal" + s)) continue;
      const std::string how = s.empty() ? "rows deleted in their transaction" : "messages";
      md << "| WAL relay events/s (" << how << "), against pg_recvlogical alone | "
         << Fixed(Num(t, "relay_wal" + s)) << " | " << Fixed(Num(t, "wal_decode_alone" + s))
         << " | " << Fixed(Num(t, "relay_wal_vs_decode" + s), 2) << " | ≥ 0.5 |\n";
      if (t->has("relay_wal_vs_polling" + s)) {
        md << "| WAL relay (" << how << ") against the polling relay | "
           << Fixed(Num(t, "relay_wal" + s)) << " | " << Fixed(Num(outbox, "per_second")) << " | "
           << Fixed(Num(t, "relay_wal_vs_polling" + s), 1) << "× | ≥ 5× |\n";
      }
    }
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

}  // namespace treaty::bench
