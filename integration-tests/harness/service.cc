#include "integration-tests/harness/service.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace treaty::harness {

Result<std::unique_ptr<Service>> Service::Start(ServiceSpec spec) {
  std::unique_ptr<Service> s(new Service());
  s->spec_ = std::move(spec);
  auto dir = TempDir::Create(s->spec_.name);
  if (!dir.ok()) return dir.status();
  s->dir_ = std::move(*dir);
  s->config_path_ = s->dir_.File("config.yaml");
  s->address_path_ = s->dir_.File("address");
  std::ofstream(s->config_path_) << s->spec_.config_yaml;
  Status st = s->Launch();
  if (!st.ok()) return st;
  return s;
}

Status Service::Launch() {
  std::error_code ec;
  std::filesystem::remove(address_path_, ec);
  if (!base_url_.empty()) {
    // A restart comes back where clients know to find it, as a real service would.
    std::string address = base_url_.substr(std::string("http://").size());
    std::string config = spec_.config_yaml;
    const std::string any_port = "listen: 127.0.0.1:0";
    size_t at = config.find(any_port);
    if (at != std::string::npos) config.replace(at, any_port.size(), "listen: " + address);
    std::ofstream(config_path_) << config;
  }
  std::vector<std::string> argv = {spec_.binary, "--config", config_path_, "--address-file",
                                   address_path_};
  argv.insert(argv.end(), spec_.extra_args.begin(), spec_.extra_args.end());
  process_.reset();
  auto p = Process::Start(ProcessSpec{
      .name = spec_.name + "#" + std::to_string(++launches_),
      .argv = argv,
      .env = spec_.env,
      .log_path = dir_.File(spec_.name + ".log"),
  });
  if (!p.ok()) return p.status();
  process_ = std::move(*p);
  std::string address;
  bool up = WaitUntil(
      [&] {
        if (!process_->Running()) return true;
        std::ifstream in(address_path_);
        std::getline(in, address);
        return !address.empty();
      },
      std::chrono::seconds(30));
  if (!process_->Running()) {
    return Status::Unavailable(spec_.name + " exited during start-up (status " +
                               std::to_string(process_->ExitStatus().value_or(-1)) + "):\n" +
                               process_->ReadLog());
  }
  if (!up) return Status::DeadlineExceeded(spec_.name + " wrote no address in 30s");
  base_url_ = "http://" + address;
  return Status::Ok();
}

Service::~Service() {
  if (process_) process_->Stop(std::chrono::seconds(15));
}

Result<int> Service::Stop() { return process_->Stop(std::chrono::seconds(15)); }

Result<int> Service::Kill() { return process_->Kill(); }

Status Service::Restart(std::vector<std::pair<std::string, std::string>> env) {
  spec_.env = std::move(env);
  return Restart();
}

Status Service::Restart() {
  if (process_->Running()) return Status::Conflict(spec_.name + " is running");
  return Launch();
}

}  // namespace treaty::harness
