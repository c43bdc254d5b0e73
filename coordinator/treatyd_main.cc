// treatyd: the Treaty coordinator.
//
//   treatyd [--config FILE] [--address-file FILE]   serve
//   treatyd --check-config FILE                      validate FILE and exit (0 when valid)
//
// Exit codes: 0 after a clean stop (SIGTERM or SIGINT), 2 for bad options or config, 1 when
// serving failed (e.g. the listen address is taken).

#include <Poco/Exception.h>
#include <Poco/Util/Application.h>
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionSet.h>
#include <signal.h>

#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "common/json_text.h"
#include "common/log.h"
#include "config/treaty_config.h"
#include "coordinator/api/http_server.h"
#include "coordinator/api/router.h"
#include "coordinator/store/pg_store.h"

namespace treaty {
namespace {

constexpr int kExitServeFailed = 1;
constexpr int kExitBadConfig = 2;

const Logger kLog("treatyd");

// Writes `address` so that readers never see a partial file: a temp file renamed into place.
Status WriteAddressFile(const std::string& path, const std::string& address) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << address << "\n";
    if (!out) return Status::Internal("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status::Internal("cannot rename " + tmp);
  return Status::Ok();
}

// Brings the store up in the background: connects with backoff until it succeeds, then migrates.
// The HTTP server runs meanwhile, so /healthz answers and /readyz says why it is not ready.
class StoreStartup {
 public:
  StoreStartup(store::PgStore& store, const RetryOptions& retry) : store_(store), retry_(retry) {
    thread_ = std::thread([this] { Run(); });
  }
  ~StoreStartup() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // True once the schema is current.
  bool migrated() const {
    std::lock_guard<std::mutex> lock(mu_);
    return migrated_;
  }
  std::string last_error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_error_;
  }

 private:
  void Run() {
    Duration backoff = retry_.initial;
    for (int attempt = 1;; ++attempt) {
      Result<int> applied = store_.Migrate();
      std::unique_lock<std::mutex> lock(mu_);
      if (applied.ok()) {
        migrated_ = true;
        last_error_.clear();
        lock.unlock();
        kLog.Info(*applied ? "store schema migrated" : "store schema up to date",
                  {{"migrations_applied", std::to_string(*applied)}});
        return;
      }
      last_error_ = applied.status().message();
      kLog.Warn("store not available yet; retrying",
                {{"attempt", std::to_string(attempt)}, {"error", last_error_},
                 {"retry_in", FormatDuration(backoff)}});
      if (cv_.wait_for(lock, backoff, [this] { return stopping_; })) return;
      backoff = std::min<Duration>(retry_.max, Duration(static_cast<int64_t>(
                                                   static_cast<double>(backoff.count()) *
                                                   retry_.multiplier)));
    }
  }

  store::PgStore& store_;
  const RetryOptions retry_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool migrated_ = false;
  std::string last_error_;
  std::thread thread_;
};

void WaitForStopSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  int sig = 0;
  sigwait(&set, &sig);
  kLog.Info("stop requested", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
}

class Treatyd : public Poco::Util::Application {
 public:
  void PrintHelp() {
    Poco::Util::HelpFormatter help(options());
    help.setCommand("treatyd");
    help.setUsage("[--config FILE] [--address-file FILE] | --check-config FILE");
    help.setHeader("Treaty: a distributed transaction coordinator.");
    help.setUnixStyle(true);
    help.format(std::cout);
  }

 protected:
  void defineOptions(Poco::Util::OptionSet& options) override {
    Application::defineOptions(options);
    options.addOption(Poco::Util::Option("help", "h", "print this help and exit"));
    options.addOption(Poco::Util::Option("config", "c", "the treaty.yaml to run with")
                          .argument("FILE")
                          .repeatable(false));
    options.addOption(Poco::Util::Option("check-config", "", "validate FILE, print the result, exit")
                          .argument("FILE")
                          .repeatable(false));
    options.addOption(
        Poco::Util::Option("address-file", "", "write host:port here once serving").argument("FILE"));
  }

  void handleOption(const std::string& name, const std::string& value) override {
    Application::handleOption(name, value);
    if (name == "help") {
      help_ = true;
      stopOptionsProcessing();
    } else if (name == "config") {
      config_path_ = value;
    } else if (name == "check-config") {
      check_config_path_ = value;
    } else if (name == "address-file") {
      address_file_ = value;
    }
  }

  int main(const std::vector<std::string>& args) override {
    if (help_) {
      PrintHelp();
      return 0;
    }
    if (!args.empty()) {
      std::cerr << "treatyd: unexpected argument \"" << args[0] << "\" (see --help)\n";
      return kExitBadConfig;
    }
    if (!check_config_path_.empty()) {
      auto config = LoadTreatyConfig(check_config_path_, ProcessEnvironment());
      if (!config.ok()) {
        std::cerr << config.status().message() << "\n";
        return kExitBadConfig;
      }
      std::cout << check_config_path_ << ": ok\n";
      return 0;
    }
    auto config = config_path_.empty()
                      ? ParseTreatyConfig("", "(defaults)", ProcessEnvironment())
                      : LoadTreatyConfig(config_path_, ProcessEnvironment());
    if (!config.ok()) {
      std::cerr << config.status().message() << "\n";
      return kExitBadConfig;
    }
    return Serve(*config);
  }

 private:
  int Serve(const TreatyConfig& config) {
    SetLogLevel(*ParseLogLevel(config.log.level));
    {
      std::string described;
      for (const auto& [k, v] : DescribeConfig(config)) described += k + "=" + v + " ";
      kLog.Info("starting", {{"config", config.source}, {"effective", described}});
    }

    store::PgStore store(config.store.url, config.store.connect_timeout);
    StoreStartup startup(store, config.retry);

    api::Router router;
    router.Add("GET", "/healthz", [](const api::ApiRequest&) {
      return api::ApiResponse{200, "application/json", R"({"status":"ok"})"};
    });
    router.Add("GET", "/readyz", [&](const api::ApiRequest&) {
      if (!startup.migrated()) {
        return api::ApiResponse{503, "application/json",
                                R"({"status":"starting","store":)" +
                                    JsonQuote(startup.last_error().empty() ? "connecting"
                                                                           : startup.last_error()) +
                                    "}"};
      }
      Status s = store.Ping();
      if (!s.ok()) {
        return api::ApiResponse{503, "application/json",
                                R"({"status":"unavailable","store":)" + JsonQuote(s.message()) + "}"};
      }
      return api::ApiResponse{200, "application/json", R"({"status":"ready"})"};
    });

    auto server = api::HttpServer::Start(api::HttpServerOptions{.listen = config.listen}, router);
    if (!server.ok()) {
      kLog.Error("cannot serve", {{"error", server.status().message()}});
      return kExitServeFailed;
    }
    std::string address = (*server)->address().ToString();
    kLog.Info("listening", {{"address", address}});
    if (!address_file_.empty()) {
      Status s = WriteAddressFile(address_file_, address);
      if (!s.ok()) {
        kLog.Error("cannot write the address file", {{"error", s.message()}});
        return kExitServeFailed;
      }
    }

    WaitForStopSignal();
    (*server)->Stop();
    kLog.Info("stopped");
    return 0;
  }

  bool help_ = false;
  std::string config_path_;
  std::string check_config_path_;
  std::string address_file_;
};

}  // namespace
}  // namespace treaty

int main(int argc, char** argv) {
  // Block the stop signals before any thread starts, so that every thread inherits the mask and
  // only WaitForStopSignal's sigwait receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  treaty::Treatyd app;
  try {
    app.init(argc, argv);
  } catch (const Poco::Exception& e) {
    std::cerr << "treatyd: " << e.displayText() << " (see --help)\n";
    return 2;
  }
  return app.run();
}
