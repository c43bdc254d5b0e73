// bench-participant: a participant that answers every protocol call at once (200, "{}"), so that
// a benchmark measures the coordinator and not a service.
//
//   bench-participant [--config FILE] [--address-file FILE]
//
// Config: `listen` (default 127.0.0.1:0) and `threads` (default 64).

#include "common/http/http_server.h"
#include "common/http/router.h"
#include "common/log.h"
#include "common/service_main.h"
#include "config/config_reader.h"

namespace treaty {
namespace {

const Logger kLog("bench-participant");

struct ParticipantConfig {
  HostPort listen{"127.0.0.1", 0};
  int64_t threads = 64;
};

Result<ParticipantConfig> Load(const std::string& path) {
  auto text = ReadConfigText(path);
  if (!text.ok()) return text.status();
  ConfigReader r(path.empty() ? "(defaults)" : path, *text, ProcessEnvironment());
  ParticipantConfig c;
  r.Address("listen", &c.listen);
  r.Int("threads", &c.threads, 1, 1024);
  Status s = r.Finish();
  if (!s.ok()) return s;
  return c;
}

int Serve(const ParticipantConfig& c, const std::string& address_file) {
  http::Router router;
  auto ok = [](const http::ApiRequest&) {
    return http::ApiResponse{200, "application/json", "{}"};
  };
  router.Add("GET", "/healthz", ok);
  for (const char* pattern : {"/{mode}/{op}", "/{op}"}) router.Add("POST", pattern, ok);
  auto server = http::HttpServer::Start(
      http::HttpServerOptions{
          .listen = c.listen, .max_threads = static_cast<int>(c.threads), .max_queued = 1024},
      router);
  if (!server.ok()) {
    kLog.Error("cannot serve", {{"error", server.status().message()}});
    return kExitServeFailed;
  }
  if (!address_file.empty() &&
      !WriteAddressFile(address_file, (*server)->address().ToString()).ok()) {
    return kExitServeFailed;
  }
  WaitForStopSignal();
  (*server)->Stop();
  return 0;
}

}  // namespace
}  // namespace treaty

int main(int argc, char** argv) {
  using namespace treaty;
  return RunServiceMain(argc, argv,
                        ServiceMainSpec{
                            .name = "bench-participant",
                            .description = "A participant that agrees to everything at once.",
                            .check_config =
                                [](const std::string& path) {
                                  auto c = Load(path);
                                  return c.ok() ? Status::Ok() : c.status();
                                },
                            .serve =
                                [](const ServeArgs& args) {
                                  auto c = Load(args.config_path);
                                  if (!c.ok()) return kExitBadConfig;
                                  return Serve(*c, args.address_file);
                                },
                        });
}
