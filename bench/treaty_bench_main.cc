// treaty-bench: what scripts/bench runs.
//
//   treaty-bench run [--quick|--smoke] --out FILE.json --markdown FILE.md [--readme README.md]
//       starts durable PostgreSQL, the dev broker, the no-op participant and treatyd, measures
//       every figure of bench/README.md and writes them
//   treaty-bench load --treatyd URL --participant URL --mode M [--clients N] [--branches B]
//                     [--warmup S] [--seconds S] [--run-id ID]
//       one closed-loop load run; prints one JSON line
//   treaty-bench serve [--shards N]
//       starts the same servers as run and prints their addresses (one JSON line), then keeps
//       them up until stdin closes: for profiling one mode with load and perf by hand
//   treaty-bench shards [--shards N] [--clients C] [--warmup S] [--seconds S]
//       the same servers with treatyd's store split over N durable clusters (store.shards),
//       then one 2PC closed-loop load run against them; prints one JSON line (docs/scaling.md)
//   treaty-bench produce --bootstrap HOST:PORT [--messages N] [--size BYTES]
//       the raw librdkafka produce rate (idempotent, acks=all, as treatyd and the relay produce)

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Stringifier.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "bench/bench_run.h"
#include "bench/bench_stack.h"
#include "bench/ceilings.h"
#include "bench/load.h"
#include "bench/report.h"
#include "bench/run_options.h"

namespace treaty::bench {
namespace {

using Poco::JSON::Object;

// "--key value" pairs and bare "--flag"s after the subcommand.
std::map<std::string, std::string> Flags(int argc, char** argv, int first) {
  std::map<std::string, std::string> flags;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) continue;
    if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      flags[a.substr(2)] = argv[++i];
    } else {
      flags[a.substr(2)] = "true";
    }
  }
  return flags;
}

int Fail(const std::string& what) {
  std::cerr << "treaty-bench: " << what << "\n";
  return 1;
}

int RunCommand(const std::map<std::string, std::string>& flags, const std::string& self) {
  std::string kind = flags.count("smoke") ? "smoke" : flags.count("quick") ? "quick" : "full";
  if (!flags.count("out") || !flags.count("markdown"))
    return Fail("run needs --out and --markdown");
  BenchRun run(OptionsFor(kind), self);
  Object::Ptr doc = new Object(Poco::JSON_PRESERVE_KEY_ORDER);
  Status s = run.Run(doc);
  if (!s.ok()) return Fail(s.message());
  {
    std::ofstream out(flags.at("out"));
    Poco::JSON::Stringifier::stringify(doc, out, 2);
    out << "\n";
  }
  std::ofstream(flags.at("markdown")) << Markdown(doc);
  if (flags.count("readme")) {
    // Only the part between the markers is replaced.
    const std::string begin = "<!-- bench:begin -->", end = "<!-- bench:end -->";
    std::ifstream in(flags.at("readme"));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t b = text.find(begin), e = text.find(end);
    if (b == std::string::npos || e == std::string::npos || e < b) {
      return Fail(flags.at("readme") + " has no " + begin + " ... " + end + " section");
    }
    text = text.substr(0, b + begin.size()) + "\n" + Markdown(doc) + text.substr(e);
    std::ofstream(flags.at("readme")) << text;
  }
  std::cerr << "\n"
            << Markdown(doc) << "\nwrote " << flags.at("out") << " and " << flags.at("markdown")
            << "\n";
  return 0;
}

}  // namespace
}  // namespace treaty::bench

int main(int argc, char** argv) {
  using namespace treaty::bench;
  if (argc < 2) return Fail("usage: treaty-bench run|load|produce ... (see bench/README.md)");
  std::string cmd = argv[1];
  auto flags = Flags(argc, argv, 2);
  if (cmd == "load") {
    LoadSpec spec;
    spec.treatyd = flags["treatyd"];
    spec.participant = flags["participant"];
    spec.mode = flags.count("mode") ? flags["mode"] : "2pc";
    if (flags.count("clients")) spec.clients = std::stoi(flags["clients"]);
    if (flags.count("branches")) spec.branches = std::stoi(flags["branches"]);
    if (flags.count("warmup"))
      spec.warmup = treaty::ParseDuration(flags["warmup"]).value_or(spec.warmup);
    if (flags.count("seconds"))
      spec.measure = treaty::ParseDuration(flags["seconds"]).value_or(spec.measure);
    if (flags.count("run-id")) spec.run_id = flags["run-id"];
    if (spec.participant.empty()) return Fail("load needs --participant");
    std::cout << ToJson(spec, RunLoad(spec)) << std::endl;
    return 0;
  }
  if (cmd == "produce") {
    auto r = Produce(flags["bootstrap"],
                     flags.count("messages") ? std::stoll(flags["messages"]) : 100000,
                     flags.count("size") ? std::stoul(flags["size"]) : 100);
    std::cout << "{\"per_second\":" << r.rate << ",\"failed\":" << r.failed << "}" << std::endl;
    return r.failed == 0 ? 0 : 1;
  }
  if (cmd == "shards") {
    const int shards = flags.count("shards") ? std::stoi(flags["shards"]) : 2;
    BenchStack stack(shards);
    if (treaty::Status s = stack.Start(); !s.ok()) return Fail(s.message());
    LoadSpec spec;
    spec.treatyd = stack.treatyd().base_url();
    spec.participant = stack.participant().base_url();
    spec.mode = "2pc";
    spec.clients = flags.count("clients") ? std::stoi(flags["clients"]) : 32;
    if (flags.count("warmup"))
      spec.warmup = treaty::ParseDuration(flags["warmup"]).value_or(spec.warmup);
    if (flags.count("seconds"))
      spec.measure = treaty::ParseDuration(flags["seconds"]).value_or(spec.measure);
    spec.run_id = "shards" + std::to_string(shards);
    std::cout << "{\"shards\":" << shards << ",\"load\":" << ToJson(spec, RunLoad(spec)) << "}"
              << std::endl;
    return 0;
  }
  if (cmd == "serve") {
    BenchStack stack(flags.count("shards") ? std::stoi(flags["shards"]) : 1);
    treaty::Status s = stack.Start();
    if (s.ok()) s = stack.ServeUntilStdinCloses();
    return s.ok() ? 0 : Fail(s.message());
  }
  if (cmd == "run") {
    std::string self = std::filesystem::canonical("/proc/self/exe").string();
    return RunCommand(flags, self);
  }
  return Fail("unknown command " + cmd);
}
