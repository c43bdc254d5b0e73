#include "integration-tests/harness/pg_auto_failover.h"

#include <pwd.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>
#include <vector>

namespace treaty::harness {
namespace fs = std::filesystem;

namespace {

// pg_auto_failover's Debian package is built for one PostgreSQL major version.
constexpr const char* kBinDir = "/usr/lib/postgresql/15/bin";

std::string KeywordString(uint16_t port, std::string_view database) {
  return "host=127.0.0.1 port=" + std::to_string(port) +
         " user=postgres connect_timeout=3 dbname=" + std::string(database);
}

// The pids of `root`'s descendants, read from /proc (children before their own children).
std::vector<pid_t> Descendants(pid_t root) {
  std::vector<pid_t> found{root};
  for (size_t i = 0; i < found.size(); ++i) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
      const std::string name = e.path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream stat(e.path() / "stat");
      std::string line;
      if (!std::getline(stat, line)) continue;
      // pid (comm) state ppid ...: comm may hold spaces, so parse after its closing ')'.
      size_t close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 1));
      std::string state;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid == found[i]) found.push_back(static_cast<pid_t>(std::stoi(name)));
    }
  }
  found.erase(found.begin());
  return found;
}

}  // namespace

Result<std::unique_ptr<PgAutoFailover>> PgAutoFailover::Start(const std::string& database,
                                                              int standbys) {
  if (standbys < 1 || standbys > 2) return Status::InvalidArgument("1 or 2 standbys");
  std::unique_ptr<PgAutoFailover> f(new PgAutoFailover());
  f->nodes_.resize(1 + standbys);
  if (!fs::exists("/usr/bin/pg_autoctl") || !fs::exists(std::string(kBinDir) + "/postgres")) {
    return Status::NotFound(
        "pg_auto_failover is not installed (apt-get install pg-auto-failover-cli "
        "postgresql-15-auto-failover)");
  }
  f->bin_dir_ = kBinDir;
  auto dir = TempDir::Create("pgaf");
  if (!dir.ok()) return dir.status();
  f->dir_ = std::move(*dir);
  if (::geteuid() == 0) {
    f->run_as_ = "postgres";
    passwd* pw = ::getpwnam("postgres");  // NOLINT(concurrency-mt-unsafe)
    if (pw == nullptr) return Status::NotFound("running as root needs a 'postgres' user");
    if (::chown(f->dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return Status::Internal("chown " + f->dir_.path() + " failed");
    }
  }
  auto mport = FreePort();
  if (!mport.ok()) return mport.status();
  f->monitor_port_ = *mport;
  auto monitor = Process::Start(ProcessSpec{
      .name = "pg_autoctl monitor",
      .argv = {"/usr/bin/pg_autoctl", "create", "monitor", "--pgdata", f->dir_.File("monitor"),
               "--pgport", std::to_string(f->monitor_port_), "--hostname", "127.0.0.1", "--auth",
               "trust", "--no-ssl", "--run"},
      .env = f->Env(),
      .log_path = f->dir_.File("monitor.log"),
      .cwd = f->dir_.path(),
      .run_as = f->run_as_,
  });
  if (!monitor.ok()) return monitor.status();
  f->monitor_ = std::move(*monitor);
  std::string last_error;
  bool up = WaitUntil(
      [&] {
        if (!f->monitor_->Running()) return true;
        try {
          pqxx::connection c(KeywordString(f->monitor_port_, "pg_auto_failover"));
          pqxx::nontransaction tx(c);
          tx.exec("SELECT 1 FROM pgautofailover.formation");
          return true;
        } catch (const std::exception& e) {
          last_error = e.what();
          return false;
        }
      },
      std::chrono::seconds(120), std::chrono::milliseconds(200));
  if (!f->monitor_->Running() || !up) {
    return Status::Unavailable("the pg_auto_failover monitor did not start: " + last_error + "\n" +
                               f->monitor_->ReadLog());
  }
  // Seconds rather than the default minute from a lost primary to a promoted secondary.
  try {
    pqxx::connection c(KeywordString(f->monitor_port_, "pg_auto_failover"));
    pqxx::nontransaction tx(c);
    for (const char* setting :
         {"health_check_period = 1000", "health_check_timeout = 1000",
          "health_check_max_retries = 1", "health_check_retry_delay = 500",
          "node_considered_unhealthy_timeout = 3000", "primary_demote_timeout = 3000"}) {
      tx.exec(std::string("ALTER SYSTEM SET pgautofailover.") + setting);
    }
    tx.exec("SELECT pg_reload_conf()");
  } catch (const std::exception& e) {
    return Status::Internal(std::string("tuning the monitor: ") + e.what());
  }
  Status s = f->StartNode(0, database);
  if (!s.ok()) return s;
  s = f->AllowPreparedTransactions();
  if (!s.ok()) return s;
  for (int i = 1; i <= standbys; ++i) {
    s = f->StartNode(i, database);
    if (!s.ok()) return s;
  }
  if (standbys == 2) {
    // One standby must confirm every commit, whichever it is: the primary blocks writes rather
    // than go asynchronous when neither does.
    auto set =
        f->QueryValue(-1, "pg_auto_failover",
                      "SELECT pgautofailover.set_formation_number_sync_standbys('default', 1)");
    if (!set.ok() || *set != "t") {
      return Status::Internal("number_sync_standbys 1: " +
                              (set.ok() ? *set : set.status().message()));
    }
  }
  s = f->WaitPrimary(0, std::chrono::seconds(120));
  if (!s.ok()) return s;
  return f;
}

std::vector<std::pair<std::string, std::string>> PgAutoFailover::Env() const {
  // pg_autoctl keeps its config and state under XDG dirs: keep them in our temp dir too.
  return {{"PATH", bin_dir_ + ":/usr/bin:/bin"},
          {"LC_ALL", "C"},
          {"XDG_CONFIG_HOME", dir_.File("config")},
          {"XDG_DATA_HOME", dir_.File("state")},
          {"HOME", dir_.path()}};
}

std::string PgAutoFailover::MonitorUrl() const {
  return "postgres://autoctl_node@127.0.0.1:" + std::to_string(monitor_port_) +
         "/pg_auto_failover?sslmode=disable";
}

Status PgAutoFailover::AllowPreparedTransactions() {
  // A setting read only at start: set it, then stop the postmaster (fast shutdown), which the
  // keeper starts again at once with it.
  Status s = Execute(0, "postgres", "ALTER SYSTEM SET max_prepared_transactions = 100");
  if (!s.ok()) return s;
  std::ifstream pid_file(nodes_[0].pgdata + "/postmaster.pid");
  pid_t postmaster = 0;
  if (!(pid_file >> postmaster) || postmaster <= 0) {
    return Status::Internal("no postmaster.pid in " + nodes_[0].pgdata);
  }
  ::kill(postmaster, SIGINT);
  std::string last;
  bool restarted = WaitUntil(
      [&] {
        auto v = QueryValue(0, "postgres", "SHOW max_prepared_transactions");
        last = v.ok() ? *v : v.status().message();
        return v.ok() && *v == "100";
      },
      std::chrono::seconds(120), std::chrono::milliseconds(200));
  if (!restarted) {
    return Status::Unavailable("node0 did not restart with max_prepared_transactions = 100 (" +
                               last + ")\n" + nodes_[0].keeper->ReadLog());
  }
  return WaitState(0, "single", std::chrono::seconds(120));
}

Status PgAutoFailover::StartNode(int i, const std::string& database) {
  Node& n = nodes_[i];
  n.name = "node" + std::to_string(i);
  n.pgdata = dir_.File(n.name);
  auto port = FreePort();
  if (!port.ok()) return port.status();
  n.port = *port;
  auto keeper = Process::Start(ProcessSpec{
      .name = "pg_autoctl " + n.name,
      .argv = {"/usr/bin/pg_autoctl", "create", "postgres", "--pgdata", n.pgdata, "--pgport",
               std::to_string(n.port), "--hostname", "127.0.0.1", "--name", n.name, "--auth",
               "trust", "--no-ssl", "--dbname", database, "--monitor", MonitorUrl(), "--run"},
      .env = Env(),
      .log_path = dir_.File(n.name + ".log"),
      .cwd = dir_.path(),
      .run_as = run_as_,
  });
  if (!keeper.ok()) return keeper.status();
  n.keeper = std::move(*keeper);
  // Alone, the first node is "single"; it becomes "primary" once the second is "secondary".
  const std::string want = i == 0 ? "single" : "secondary";
  bool ready = WaitUntil(
      [&] {
        if (!n.keeper->Running()) return true;
        if (i > 0) {
          // The standby's base backup waits for a checkpoint on the primary, spread over minutes
          // by default: ask for one now.
          (void)Execute(0, "postgres", "CHECKPOINT");
        }
        auto state = QueryValue(
            -1, "pg_auto_failover",
            "SELECT reportedstate FROM pgautofailover.node WHERE nodename = '" + n.name + "'");
        return state.ok() && *state == want;
      },
      std::chrono::seconds(180), std::chrono::milliseconds(500));
  if (!n.keeper->Running() || !ready) {
    return Status::Unavailable(n.name + " did not become " + want + " (" + States() + ")\n" +
                               n.keeper->ReadLog());
  }
  return Status::Ok();
}

PgAutoFailover::~PgAutoFailover() {
  for (Node& n : nodes_) {
    if (n.keeper && n.keeper->Running()) {
      // SIGINT: pg_autoctl's fast shutdown, which stops its PostgreSQL too.
      n.keeper->Signal(SIGINT);
      if (!n.keeper->Wait(std::chrono::seconds(30)).ok()) (void)KillNode(&n - nodes_.data());
    }
    n.keeper.reset();
  }
  if (monitor_ && monitor_->Running()) {
    for (pid_t p : Descendants(monitor_->pid())) ::kill(p, SIGKILL);
    monitor_->Kill();
  }
}

std::string PgAutoFailover::Url(std::string_view database) const {
  std::string hosts;
  for (const Node& n : nodes_) {
    hosts += (hosts.empty() ? "" : ",") + std::string("127.0.0.1:") + std::to_string(n.port);
  }
  return "postgresql://postgres@" + hosts + "/" + std::string(database) +
         "?target_session_attrs=read-write";
}

std::string PgAutoFailover::States() {
  auto s = QueryValue(-1, "pg_auto_failover",
                      "SELECT string_agg(nodename || '=' || reportedstate || '/' || goalstate, "
                      "',' ORDER BY nodename) FROM pgautofailover.node");
  return s.ok() ? *s : s.status().message();
}

int PgAutoFailover::Primary() {
  auto s = QueryValue(-1, "pg_auto_failover",
                      "SELECT nodename FROM pgautofailover.node WHERE reportedstate IN "
                      "('primary', 'wait_primary') AND goalstate = reportedstate");
  if (!s.ok() || s->empty()) return -1;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (*s == nodes_[i].name) return static_cast<int>(i);
  }
  return -1;
}

int PgAutoFailover::Writable(const std::string& database) {
  for (int i = 0; i < size(); ++i) {
    auto r = QueryValue(i, database, "SELECT NOT pg_is_in_recovery()");
    if (r.ok() && *r == "t") return i;
  }
  return -1;
}

Status PgAutoFailover::KillNode(int node) {
  Node& n = nodes_[node];
  if (!n.keeper || !n.keeper->Running()) return Status::Ok();
  // Stop the keeper first so that it cannot restart what we kill after it.
  std::vector<pid_t> tree = Descendants(n.keeper->pid());
  ::kill(n.keeper->pid(), SIGSTOP);
  for (pid_t p : tree) ::kill(p, SIGKILL);
  n.keeper->Kill();
  return Status::Ok();
}

Status PgAutoFailover::RestartNode(int node, Duration timeout) {
  Node& n = nodes_[node];
  if (n.keeper && n.keeper->Running()) return Status::Conflict(n.name + " is running");
  auto keeper = Process::Start(ProcessSpec{
      .name = "pg_autoctl " + n.name + " (restarted)",
      .argv = {"/usr/bin/pg_autoctl", "run", "--pgdata", n.pgdata},
      .env = Env(),
      .log_path = dir_.File(n.name + "-restarted.log"),
      .cwd = dir_.path(),
      .run_as = run_as_,
  });
  if (!keeper.ok()) return keeper.status();
  n.keeper = std::move(*keeper);
  return WaitState(node, "secondary", timeout);
}

Status PgAutoFailover::WaitState(int i, const std::string& state, Duration timeout) {
  Node& n = nodes_[i];
  bool reached = WaitUntil(
      [&] {
        if (!n.keeper->Running()) return true;
        auto s = QueryValue(-1, "pg_auto_failover",
                            "SELECT reportedstate = '" + state + "' AND goalstate = '" + state +
                                "' FROM pgautofailover.node WHERE nodename = '" + n.name + "'");
        return s.ok() && *s == "t";
      },
      timeout, std::chrono::milliseconds(500));
  if (!n.keeper->Running() || !reached) {
    return Status::Unavailable(n.name + " did not become " + state + " (" + States() + ")\n" +
                               n.keeper->ReadLog());
  }
  return Status::Ok();
}

Status PgAutoFailover::Switchover() {
  auto p = Process::Start(ProcessSpec{
      .name = "pg_autoctl perform switchover",
      .argv = {"/usr/bin/pg_autoctl", "perform", "switchover", "--pgdata", dir_.File("monitor"),
               "--wait", "120"},
      .env = Env(),
      .log_path = dir_.File("switchover.log"),
      .cwd = dir_.path(),
      .run_as = run_as_,
  });
  if (!p.ok()) return p.status();
  auto code = (*p)->Wait(std::chrono::seconds(180));
  if (!code.ok() || *code != 0) {
    return Status::Internal("pg_autoctl perform switchover failed (" + States() + "):\n" +
                            (*p)->ReadLog());
  }
  return Status::Ok();
}

Status PgAutoFailover::WaitPrimary(int node, Duration timeout) {
  bool ok = WaitUntil([&] { return Primary() == node && Writable("postgres") == node; }, timeout,
                      std::chrono::milliseconds(100));
  if (!ok) {
    return Status::DeadlineExceeded(nodes_[node].name + " did not become primary (" + States() +
                                    ")");
  }
  return Status::Ok();
}

Result<int> PgAutoFailover::WaitNewPrimary(int old, Duration timeout) {
  int found = -1;
  bool ok = WaitUntil(
      [&] {
        const int p = Primary();
        found = p != old && p >= 0 && Writable("postgres") == p ? p : -1;
        return found >= 0;
      },
      timeout, std::chrono::milliseconds(100));
  if (!ok) {
    return Status::DeadlineExceeded("no node but " + nodes_[old].name + " became primary (" +
                                    States() + ")");
  }
  return found;
}

Status PgAutoFailover::Execute(int node, const std::string& database, const std::string& sql) {
  try {
    pqxx::connection c(KeywordString(nodes_[node].port, database));
    pqxx::nontransaction tx(c);
    tx.exec(sql);
    return Status::Ok();
  } catch (const std::exception& e) {
    return Status::Unavailable(sql + ": " + e.what());
  }
}

// `node` -1 is the monitor.
Result<std::string> PgAutoFailover::QueryValue(int node, const std::string& database,
                                               const std::string& sql) {
  try {
    pqxx::connection c(KeywordString(node < 0 ? monitor_port_ : nodes_[node].port, database));
    pqxx::nontransaction tx(c);
    pqxx::result r = tx.exec(sql);
    if (r.empty() || r[0].empty() || r[0][0].is_null()) return std::string();
    return std::string(r[0][0].c_str());
  } catch (const std::exception& e) {
    return Status::Unavailable(sql + ": " + e.what());
  }
}

}  // namespace treaty::harness
