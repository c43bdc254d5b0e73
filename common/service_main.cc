#include "common/service_main.h"

#include <Poco/Exception.h>
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionProcessor.h>
#include <Poco/Util/OptionSet.h>
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <iostream>

namespace treaty {

std::string WaitForStopSignal(const std::function<void()>& on_hangup) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  while (true) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGHUP) {
      if (on_hangup) on_hangup();
      continue;
    }
    return sig == SIGTERM ? "SIGTERM" : "SIGINT";
  }
}

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

Result<std::unique_ptr<http::HttpServer>> ServeAndAnnounce(const http::HttpServerOptions& options,
                                                           const http::Router& router,
                                                           const std::string& address_file,
                                                           const Logger& log) {
  auto server = http::HttpServer::Start(options, router);
  if (!server.ok()) {
    log.Error("cannot serve", {{"error", server.status().message()}});
    return server.status();
  }
  std::string address = (*server)->address().ToString();
  log.Info("listening", {{"address", address}});
  if (!address_file.empty()) {
    if (Status s = WriteAddressFile(address_file, address); !s.ok()) {
      log.Error("cannot write the address file", {{"error", s.message()}});
      return s;
    }
  }
  return server;
}

int RunServiceMain(int argc, char** argv, const ServiceMainSpec& spec) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  using Poco::Util::Option;
  Poco::Util::OptionSet options;
  options.addOption(Option("help", "h", "print this help and exit"));
  options.addOption(Option("config", "c", "the YAML config file to run with").argument("FILE"));
  options.addOption(
      Option("check-config", "", "validate FILE, print the result and exit").argument("FILE"));
  options.addOption(
      Option("address-file", "", "write the host:port served once listening").argument("FILE"));

  ServeArgs args;
  std::string check_path;
  bool help = false;
  try {
    Poco::Util::OptionProcessor processor(options);
    processor.setUnixStyle(true);
    for (int i = 1; i < argc; ++i) {
      std::string name, value;
      if (!processor.process(argv[i], name, value)) {
        std::cerr << spec.name << ": unexpected argument \"" << argv[i] << "\" (see --help)\n";
        return kExitBadConfig;
      }
      if (name == "help") help = true;
      if (name == "config") args.config_path = value;
      if (name == "check-config") check_path = value;
      if (name == "address-file") args.address_file = value;
    }
    processor.checkRequired();
  } catch (const Poco::Exception& e) {
    std::cerr << spec.name << ": " << e.displayText() << " (see --help)\n";
    return kExitBadConfig;
  }
  if (help) {
    Poco::Util::HelpFormatter formatter(options);
    formatter.setCommand(spec.name);
    formatter.setUsage("[--config FILE] [--address-file FILE] | --check-config FILE");
    formatter.setHeader(spec.description);
    formatter.setUnixStyle(true);
    formatter.format(std::cout);
    return 0;
  }
  if (!check_path.empty()) {
    Status s = spec.check_config(check_path);
    if (!s.ok()) {
      std::cerr << s.message() << "\n";
      return kExitBadConfig;
    }
    std::cout << check_path << ": ok\n";
    return 0;
  }
  return spec.serve(args);
}

}  // namespace treaty
