// treaty-chaos: the fault-injection run with a history checker (docs/reliability.md).
//
//   treaty-chaos --seed N [--minutes M | --seconds S] [--clients C] [--out DIR] [--keep]
//
// Starts PostgreSQL, the dev broker, three treatyd on one store, the demo participants and two
// relays; runs a seeded mixed workload while a seeded nemesis injects faults; heals; waits for
// quiescence; checks six invariants. Prints the seed, the faults, the counts and every violation.
// Exit: 0 no violation, 1 violations (history and logs kept in the out dir), 2 the run could not
// be made.

#include <Poco/Exception.h>
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionProcessor.h>
#include <Poco/Util/OptionSet.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "integration-tests/chaos/chaos_run.h"
#include "integration-tests/chaos/nemesis.h"

namespace {

constexpr int kViolations = 1;
constexpr int kRunFailed = 2;

}  // namespace

int main(int argc, char** argv) {
  using Poco::Util::Option;
  Poco::Util::OptionSet options;
  options.addOption(Option("help", "h", "print this help and exit"));
  options.addOption(Option("seed", "", "the seed of the workload and the nemesis").argument("N"));
  options.addOption(Option("minutes", "", "minutes of workload under faults").argument("M"));
  options.addOption(Option("seconds", "", "seconds of workload under faults").argument("S"));
  options.addOption(Option("clients", "", "client threads (default 4)").argument("C"));
  options.addOption(
      Option("faults", "", "only these fault kinds, comma-separated (default: all; see below)")
          .argument("K,K"));
  options.addOption(
      Option("out", "", "where the history and, on a violation, the logs go").argument("DIR"));
  options.addOption(Option("keep", "", "keep the out dir (history, logs) after a clean run"));
  treaty::chaos::RunConfig config;
  bool help = false, keep = false;
  try {
    Poco::Util::OptionProcessor processor(options);
    processor.setUnixStyle(true);
    for (int i = 1; i < argc; ++i) {
      std::string name, value;
      if (!processor.process(argv[i], name, value)) {
        std::cerr << "treaty-chaos: unexpected argument \"" << argv[i] << "\" (see --help)\n";
        return kRunFailed;
      }
      if (name == "help") help = true;
      if (name == "seed") config.seed = std::stoull(value);
      if (name == "minutes") config.duration = std::chrono::minutes(std::stoi(value));
      if (name == "seconds") config.duration = std::chrono::seconds(std::stoi(value));
      if (name == "clients") config.clients = std::stoi(value);
      if (name == "out") config.out_dir = value;
      if (name == "keep") keep = config.keep_logs = true;
      if (name == "faults") {
        std::istringstream list(value);
        for (std::string k; std::getline(list, k, ',');) config.faults.insert(k);
      }
    }
    processor.checkRequired();
  } catch (const Poco::Exception& e) {
    std::cerr << "treaty-chaos: " << e.displayText() << " (see --help)\n";
    return kRunFailed;
  } catch (const std::exception& e) {
    std::cerr << "treaty-chaos: a number was expected: " << e.what() << " (see --help)\n";
    return kRunFailed;
  }
  if (help) {
    Poco::Util::HelpFormatter formatter(options);
    formatter.setCommand("treaty-chaos");
    formatter.setUsage("--seed N [--minutes M | --seconds S] [--clients C] [--out DIR] [--keep]");
    formatter.setHeader(
        "A seeded workload under a seeded nemesis, checked against six invariants.");
    formatter.setUnixStyle(true);
    formatter.format(std::cout);
    std::cout << "fault kinds:";
    for (const std::string& k : treaty::chaos::FaultKinds()) std::cout << " " << k;
    std::cout << "\n";
    return 0;
  }
  const auto known = treaty::chaos::FaultKinds();
  for (const std::string& k : config.faults) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      std::cerr << "treaty-chaos: --faults: no fault kind \"" << k << "\" (see --help)\n";
      return kRunFailed;
    }
  }
  if (config.clients < 1 || config.duration <= treaty::Duration::zero()) {
    std::cerr << "treaty-chaos: --clients and the duration must be positive\n";
    return kRunFailed;
  }
  if (config.out_dir.empty()) {
    config.out_dir =
        "/tmp/treaty-chaos/seed-" + std::to_string(config.seed) + "-" + std::to_string(::getpid());
  }
  std::cout << "chaos: seed " << config.seed << ", history in " << config.out_dir
            << "/history.jsonl" << std::endl;
  auto report = treaty::chaos::RunChaos(config);
  if (!report.ok()) {
    std::cerr << "treaty-chaos: the run could not be made: " << report.status().message() << "\n";
    return kRunFailed;
  }
  std::string summary = report->Summary(config);
  std::cout << summary;
  std::ofstream(config.out_dir + "/summary.txt") << summary;
  if (!report->violations.empty()) {
    std::cout << "chaos: FAILED; history, summary and logs kept in " << config.out_dir << "\n";
    return kViolations;
  }
  std::cout << "chaos: passed (seed " << config.seed << ")\n";
  if (!keep) {
    std::error_code ec;
    std::filesystem::remove_all(config.out_dir, ec);
  }
  return 0;
}
