#include "integration-tests/harness/dev_broker.h"

#include <algorithm>

#include "integration-tests/harness/binaries.h"

namespace treaty::harness {

Result<std::unique_ptr<DevBroker>> DevBroker::Start(int brokers) {
  std::unique_ptr<DevBroker> b(new DevBroker());
  auto dir = TempDir::Create("devbroker");
  if (!dir.ok()) return dir.status();
  b->dir_ = std::move(*dir);
  auto p = Process::Start(ProcessSpec{
      .name = "treaty-devbroker",
      .argv = {std::string(kDevBrokerPath), "--brokers", std::to_string(brokers)},
      .env = {},
      .log_path = b->dir_.File("devbroker.log"),
      .cwd = {},
      .run_as = {},
      .pipe_stdin = true,
      .pipe_stdout = true,
  });
  if (!p.ok()) return p.status();
  b->process_ = std::move(*p);
  auto line = b->process_->ReadLine(std::chrono::seconds(30));
  const std::string prefix = "bootstrap ";
  if (!line || line->rfind(prefix, 0) != 0) {
    return Status::Unavailable("treaty-devbroker did not report its address:\n" +
                               b->process_->ReadLog());
  }
  b->bootstrap_ = line->substr(prefix.size());
  return b;
}

DevBroker::~DevBroker() {
  if (process_) process_->Stop(std::chrono::seconds(10));
}

Status DevBroker::Command(const std::string& line) {
  Status s = process_->WriteLine(line);
  if (!s.ok()) return s;
  auto answer = process_->ReadLine(std::chrono::seconds(10));
  if (!answer) return Status::Unavailable("treaty-devbroker did not answer \"" + line + "\"");
  if (*answer != "ok") return Status::Internal(line + ": " + *answer);
  return Status::Ok();
}

Result<std::vector<std::string>> DevBroker::ConsumeAll(const std::string& topic, int at_least,
                                                       bool headers) {
  return Read(topic, at_least, {"--allow-extra", "1", "--to-end", "1", "--settle-ms", "0"},
              headers);
}

Result<std::vector<std::string>> DevBroker::Consume(const std::string& topic, int count,
                                                    bool allow_extra, bool headers) {
  std::vector<std::string> how = {"--settle-ms", "1500"};
  if (allow_extra) how.insert(how.end(), {"--allow-extra", "1"});
  return Read(topic, count, how, headers);
}

Result<std::vector<std::string>> DevBroker::Read(const std::string& topic, int count,
                                                 const std::vector<std::string>& how,
                                                 bool headers) {
  const bool allow_extra = std::find(how.begin(), how.end(), "--allow-extra") != how.end();
  std::vector<std::string> args = {kKafkaProbePath, "consume", "--bootstrap", bootstrap_,
                                   "--topic",       topic,     "--count",     std::to_string(count),
                                   "--timeout-ms",  "60000"};
  args.insert(args.end(), how.begin(), how.end());
  if (headers) args.insert(args.end(), {"--headers", "1"});
  std::string log = dir_.File("consumer-" + std::to_string(++consumers_) + ".log");
  auto p = Process::Start(
      ProcessSpec{.name = "consumer", .argv = args, .log_path = log, .pipe_stdout = true});
  if (!p.ok()) return p.status();
  std::vector<std::string> lines;
  while (auto line = (*p)->ReadLine(std::chrono::seconds(90))) lines.push_back(*line);
  auto code = (*p)->Wait(std::chrono::seconds(30));
  if (!code.ok() || *code != 0) {
    return Status::Internal("reading " + topic + ": expected " + std::to_string(count) +
                            (allow_extra ? " or more" : "") + " messages, got " +
                            std::to_string(lines.size()) + ": " + (*p)->ReadLog());
  }
  return lines;
}

}  // namespace treaty::harness
