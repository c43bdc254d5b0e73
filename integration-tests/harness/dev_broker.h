#pragma once

// The dev Kafka broker (treaty-devbroker) in its own process, on loopback. Clients reach it only
// through bootstrap(); Command() drives the mock cluster's fault API ("down 1", "up 1", ...; see
// devbroker_main.cc).

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/temp_dir.h"

namespace treaty::harness {

class DevBroker {
 public:
  static Result<std::unique_ptr<DevBroker>> Start(int brokers = 1);
  ~DevBroker();

  const std::string& bootstrap() const { return bootstrap_; }
  pid_t pid() const { return process_->pid(); }

  // Sends one control command and waits for its answer; an "error ..." answer is an error.
  Status Command(const std::string& line);

  // Reads `topic` from the start as a separate consumer process (treaty-kafka-probe) would:
  // `count` messages, then for 1.5s more any beyond, as "key<TAB>value" lines (with `headers`,
  // a third column of "name=value;" pairs). An error when fewer arrive within a minute, or, unless
  // `allow_extra`, more.
  Result<std::vector<std::string>> Consume(const std::string& topic, int count,
                                           bool allow_extra = false, bool headers = false);
  // Everything `topic` holds: at least `at_least` messages, then on until every partition is
  // read to its high watermark (duplicates included). An error when that takes over a minute.
  Result<std::vector<std::string>> ConsumeAll(const std::string& topic, int at_least,
                                              bool headers = false);

 private:
  DevBroker() = default;
  Result<std::vector<std::string>> Read(const std::string& topic, int count,
                                        const std::vector<std::string>& how, bool headers);
  TempDir dir_;
  std::string bootstrap_;
  std::unique_ptr<Process> process_;
  int consumers_ = 0;
};

}  // namespace treaty::harness
