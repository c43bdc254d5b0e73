#include "integration-tests/harness/pg_cluster.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <pqxx/pqxx>

namespace treaty::harness {
namespace fs = std::filesystem;

namespace {

Result<std::string> FindBinDir() {
  if (const char* env = std::getenv("TREATY_PG_BINDIR")) {  // NOLINT(concurrency-mt-unsafe)
    return std::string(env);
  }
  std::string best;
  int best_version = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    int v = std::atoi(e.path().filename().c_str());
    if (v > best_version && fs::exists(e.path() / "bin" / "initdb")) {
      best_version = v;
      best = (e.path() / "bin").string();
    }
  }
  if (best.empty()) {
    return Status::NotFound(
        "no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql, or "
        "set TREATY_PG_BINDIR)");
  }
  return best;
}

}  // namespace

Result<std::unique_ptr<PgCluster>> PgCluster::Start(PgClusterOptions options) {
  std::unique_ptr<PgCluster> c(new PgCluster());
  c->options_ = options;
  auto bin = FindBinDir();
  if (!bin.ok()) return bin.status();
  c->bin_dir_ = *bin;
  auto dir = TempDir::Create("pg");
  if (!dir.ok()) return dir.status();
  c->dir_ = std::move(*dir);
  c->data_dir_ = c->dir_.File("data");
  if (::geteuid() == 0) {
    c->run_as_ = "postgres";
    passwd* pw = ::getpwnam("postgres");  // NOLINT(concurrency-mt-unsafe)
    if (pw == nullptr) return Status::NotFound("running as root needs a 'postgres' user");
    if (::chown(c->dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Status::Internal("chown " + c->dir_.path() + " failed");
    }
  }

  auto initdb = Process::Start(ProcessSpec{
      .name = "initdb",
      .argv = {c->bin_dir_ + "/initdb", "-D", c->data_dir_, "-U", "postgres", "-A", "trust", "-E",
               "UTF8", "--no-sync", "--no-instructions"},
      .env = {{"LC_ALL", "C"}},
      .log_path = c->dir_.File("initdb.log"),
      .cwd = c->dir_.path(),
      .run_as = c->run_as_,
  });
  if (!initdb.ok()) return initdb.status();
  auto code = (*initdb)->Wait(std::chrono::seconds(120));
  if (!code.ok() || *code != 0) {
    return Status::Internal("initdb failed:\n" + (*initdb)->ReadLog());
  }

  // The port was free a moment ago; another process may take it first, so try a few.
  Status s;
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto port = FreePort();
    if (!port.ok()) return port.status();
    c->port_ = *port;
    s = c->Launch();
    if (s.ok()) return c;
    if (c->server_ && c->server_->ReadLog().find("could not bind") == std::string::npos) break;
  }
  return s;
}

Status PgCluster::Launch() {
  std::vector<std::string> argv = {
      bin_dir_ + "/postgres",
      "-D",
      data_dir_,
      "-p",
      std::to_string(port_),
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "unix_socket_directories=" + dir_.path(),
      "-c",
      "max_prepared_transactions=" + std::to_string(options_.max_prepared_transactions),
      "-c",
      "max_connections=" + std::to_string(options_.max_connections),
      "-c",
      "log_min_messages=warning",
  };
  if (options_.logical_decoding) argv.insert(argv.end(), {"-c", "wal_level=logical"});
  if (!options_.durable) {
    for (const char* setting : {"fsync=off", "synchronous_commit=off", "full_page_writes=off"}) {
      argv.insert(argv.end(), {"-c", setting});
    }
  }
  server_.reset();
  auto p = Process::Start(ProcessSpec{
      .name = "postgres:" + std::to_string(port_) + "#" + std::to_string(++launches_),
      .argv = argv,
      .env = {{"LC_ALL", "C"}},
      .log_path = dir_.File("postgres.log"),
      .cwd = dir_.path(),
      .run_as = run_as_,
  });
  if (!p.ok()) return p.status();
  server_ = std::move(*p);
  return WaitReady();
}

Status PgCluster::WaitReady() {
  std::string last_error;
  bool ready = WaitUntil(
      [&] {
        if (!server_->Running()) return true;
        try {
          pqxx::connection conn(ConnectionString());
          return true;
        } catch (const std::exception& e) {
          last_error = e.what();
          return false;
        }
      },
      std::chrono::seconds(60), std::chrono::milliseconds(25));
  if (!server_->Running()) {
    return Status::Unavailable("postgres exited during start-up:\n" + server_->ReadLog());
  }
  if (!ready) return Status::DeadlineExceeded("postgres not ready after 60s: " + last_error);
  return Status::Ok();
}

PgCluster::~PgCluster() {
  if (server_) {
    // SIGINT is PostgreSQL's fast shutdown: roll back open work, end the backends, exit.
    if (server_->Running()) {
      server_->Signal(SIGINT);
      if (!server_->Wait(std::chrono::seconds(30)).ok()) server_->Kill();
    }
    server_.reset();
  }
}

Status PgCluster::Stop(bool immediate) {
  if (!server_ || !server_->Running()) return Status::Ok();
  server_->Signal(immediate ? SIGQUIT : SIGINT);
  auto r = server_->Wait(std::chrono::seconds(30));
  if (!r.ok()) {
    server_->Kill();
    return Status::Internal("postgres did not stop in 30s; killed");
  }
  return Status::Ok();
}

Status PgCluster::Restart() {
  if (Running()) return Status::Conflict("postgres is running");
  return Launch();
}

bool PgCluster::Running() { return server_ && server_->Running(); }

std::string PgCluster::Url(std::string_view database) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + std::string(database);
}

std::string PgCluster::ConnectionString(std::string_view database) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) +
         " user=postgres dbname=" + std::string(database) + " connect_timeout=5";
}

Status PgCluster::CreateDatabase(const std::string& name) {
  return Execute("postgres", "CREATE DATABASE \"" + name + "\"");
}

Status PgCluster::Execute(const std::string& database, const std::string& sql) {
  try {
    pqxx::connection conn(ConnectionString(database));
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Internal(sql + ": " + e.what());
  }
}

Result<std::string> PgCluster::QueryValue(const std::string& database, const std::string& sql) {
  try {
    pqxx::connection conn(ConnectionString(database));
    pqxx::nontransaction tx(conn);
    pqxx::result r = tx.exec(sql);
    if (r.empty() || r[0].empty() || r[0][0].is_null()) return std::string();
    return std::string(r[0][0].c_str());
  } catch (const std::exception& e) {
    return Status::Internal(sql + ": " + e.what());
  }
}

}  // namespace treaty::harness
