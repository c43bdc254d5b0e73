// treaty-demo: what scripts/demo runs. Starts the whole stack on free loopback ports with the
// test harness (a throwaway PostgreSQL, the dev Kafka broker, treatyd), runs the scenarios that
// exist so far, prints a summary, and stops everything it started, also on Ctrl-C.
// Exit status: 0 when every step succeeded.

#include <signal.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/dev_broker.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/service.h"

namespace treaty::demo {
namespace {

using harness::HttpCall;

std::atomic<bool> g_interrupted{false};

struct Row {
  std::string what;
  std::string where;
  std::string outcome;
};

class Demo {
 public:
  int Run() {
    Step("PostgreSQL", [&]() -> Status {
      auto pg = harness::PgCluster::Start();
      if (!pg.ok()) return pg.status();
      pg_ = std::move(*pg);
      Status s = pg_->CreateDatabase("treaty");
      if (s.ok()) Add("PostgreSQL (throwaway cluster)", pg_->Url(""), "running");
      return s;
    });
    Step("dev Kafka broker", [&]() -> Status {
      auto b = harness::DevBroker::Start();
      if (!b.ok()) return b.status();
      broker_ = std::move(*b);
      Add("Kafka (dev broker, in memory)", broker_->bootstrap(), "running");
      return Status::Ok();
    });
    Step("treatyd", [&]() -> Status {
      auto t = harness::Service::Start(harness::ServiceSpec{
          .name = "treatyd",
          .binary = harness::kTreatydPath,
          .config_yaml = "listen: 127.0.0.1:0\nstore: { url: \"" + pg_->Url("treaty") +
                         "\" }\nkafka: { bootstrap_servers: \"" + broker_->bootstrap() + "\" }\n"});
      if (!t.ok()) return t.status();
      treatyd_ = std::move(*t);
      bool ready = harness::WaitUntil(
          [&] {
            if (g_interrupted) return true;
            auto r = HttpCall("GET", treatyd_->base_url() + "/readyz");
            return r.ok() && r->status == 200;
          },
          std::chrono::seconds(60));
      if (g_interrupted) return Status::Unavailable("interrupted");
      if (!ready) return Status::DeadlineExceeded("treatyd not ready after 60s");
      Add("treatyd (coordinator)", treatyd_->base_url(), "ready, schema migrated");
      return Status::Ok();
    });

    PrintSummary();
    return failed_ ? 1 : 0;
  }

 private:
  template <typename F>
  void Step(const std::string& name, F&& f) {
    if (failed_ || g_interrupted) return;
    std::cout << "  starting " << name << " ..." << std::flush;
    auto began = std::chrono::steady_clock::now();
    Status s = f();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - began)
                  .count();
    if (s.ok()) {
      std::cout << " ok (" << ms << " ms)\n";
    } else {
      failed_ = true;
      std::cout << " FAILED\n" << s.message() << "\n";
    }
  }

  void Add(std::string what, std::string where, std::string outcome) {
    rows_.push_back(Row{std::move(what), std::move(where), std::move(outcome)});
  }

  void PrintSummary() {
    std::cout << "\nTreaty demo summary\n";
    std::printf("  %-32s %-40s %s\n", "component", "address", "state");
    for (const Row& r : rows_) {
      std::printf("  %-32s %-40s %s\n", r.what.c_str(), r.where.c_str(), r.outcome.c_str());
    }
    if (g_interrupted) {
      std::cout << "\nInterrupted: stopping everything.\n";
    } else if (failed_) {
      std::cout << "\nThe demo FAILED (see above); stopping everything.\n";
    } else {
      std::cout << "\nEverything came up and answered; stopping everything.\n";
    }
    std::cout << std::flush;
  }

  bool failed_ = false;
  std::vector<Row> rows_;
  // Stopped in reverse order of start by destruction.
  std::unique_ptr<harness::PgCluster> pg_;
  std::unique_ptr<harness::DevBroker> broker_;
  std::unique_ptr<harness::Service> treatyd_;
};

}  // namespace
}  // namespace treaty::demo

int main() {
  // Ctrl-C and SIGTERM are taken by a watcher thread that only raises a flag, so that the main
  // thread, which started every process, stops them all in order.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    sigwait(&set, &sig);
    treaty::demo::g_interrupted = true;
  }).detach();

  std::cout << "Treaty demo\n";
  int code;
  {
    treaty::demo::Demo demo;
    code = demo.Run();
  }
  if (treaty::demo::g_interrupted) code = 130;
  std::cout << (code == 0 ? "Stopped. Demo passed.\n" : "Stopped. Demo did not pass.\n");
  return code;
}
