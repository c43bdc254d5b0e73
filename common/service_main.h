#pragma once

// The process scaffold every Treaty server shares (treatyd, the demo participants, the relay):
//
//   NAME [--config FILE] [--address-file FILE]   serve until SIGTERM or SIGINT
//   NAME --check-config FILE                      validate FILE and exit
//   NAME --help
//
// Options are parsed with Poco's option processor. SIGTERM, SIGINT and SIGHUP are blocked in
// every thread before `serve` runs, so only WaitForStopSignal() receives them. Exit codes: 0 after
// a clean stop, 2 for bad options or config, 1 when serving failed.

#include <functional>
#include <memory>
#include <string>

#include "common/http/http_server.h"
#include "common/log.h"
#include "common/status.h"

namespace treaty {

inline constexpr int kExitServeFailed = 1;
inline constexpr int kExitBadConfig = 2;

struct ServeArgs {
  std::string config_path;   // empty: no --config given
  std::string address_file;  // empty: none asked for
};

struct ServiceMainSpec {
  std::string name;         // the command's name, for help and messages
  std::string description;  // one line for --help
  // Validates a config file: OK, or an error whose message is printed as it is.
  std::function<Status(const std::string& path)> check_config;
  // Serves; returns the exit code.
  std::function<int(const ServeArgs& args)> serve;
};

int RunServiceMain(int argc, char** argv, const ServiceMainSpec& spec);

// Blocks until SIGTERM or SIGINT; returns the signal's name. SIGHUP calls `on_hangup` (when
// given) and goes on waiting.
std::string WaitForStopSignal(const std::function<void()>& on_hangup = nullptr);

// Serves `router` on `listen`, logs "listening" with the bound address, and writes it to
// `address_file` (when not empty). Errors are logged; the caller exits with kExitServeFailed.
Result<std::unique_ptr<http::HttpServer>> ServeAndAnnounce(const http::HttpServerOptions& options,
                                                           const http::Router& router,
                                                           const std::string& address_file,
                                                           const Logger& log);
inline Result<std::unique_ptr<http::HttpServer>> ServeAndAnnounce(const HostPort& listen,
                                                                  const http::Router& router,
                                                                  const std::string& address_file,
                                                                  const Logger& log) {
  return ServeAndAnnounce(http::HttpServerOptions{.listen = listen}, router, address_file, log);
}

// Writes "host:port" to `path` atomically (a temp file renamed into place), so a reader never
// sees half an address.
Status WriteAddressFile(const std::string& path, const std::string& address);

}  // namespace treaty
