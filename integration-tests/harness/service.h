#pragma once

// A project server binary (treatyd, later the relay and the demo services) started with a config
// file on a free port. Every such binary takes `--config FILE --address-file FILE` and writes the
// address it listens on to the address file once it serves, so "listen: 127.0.0.1:0" works.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/temp_dir.h"

namespace treaty::harness {

struct ServiceSpec {
  std::string name;
  std::string binary;
  std::string config_yaml;  // written to <dir>/config.yaml
  std::vector<std::string> extra_args;
  std::vector<std::pair<std::string, std::string>> env;
};

class Service {
 public:
  // Starts the binary and waits until it wrote its address.
  static Result<std::unique_ptr<Service>> Start(ServiceSpec spec);
  ~Service();

  // http://127.0.0.1:<port>
  const std::string& base_url() const { return base_url_; }
  Process& process() { return *process_; }
  const std::string& config_path() const { return config_path_; }

  // SIGTERM and wait; returns the exit status.
  Result<int> Stop();
  // SIGKILL, as a crash.
  Result<int> Kill();
  // Starts the same binary with the same config again (after Stop or Kill), on the address it
  // had (a config's "listen: 127.0.0.1:0" is pinned to the port first taken).
  Status Restart();
  // The same, with the environment replaced by `env` (e.g. to disarm a crash point).
  Status Restart(std::vector<std::pair<std::string, std::string>> env);
  // Replaces the environment of the next start (Restart()) without restarting now.
  void SetEnvOfNextStart(std::vector<std::pair<std::string, std::string>> env) {
    spec_.env = std::move(env);
  }

 private:
  Service() = default;
  Status Launch();

  ServiceSpec spec_;
  TempDir dir_;
  std::string config_path_;
  std::string address_path_;
  std::string base_url_;
  int launches_ = 0;
  std::unique_ptr<Process> process_;
};

}  // namespace treaty::harness
