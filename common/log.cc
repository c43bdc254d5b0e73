#include "common/log.h"

#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeFormatter.h>
#include <Poco/Timestamp.h>
#include <unistd.h>

#include <atomic>
#include <mutex>

#include "common/json_text.h"
#include "common/thread_annotations.h"

namespace treaty {
namespace {

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
Mutex g_sink_mu;
std::function<void(std::string_view)> g_sink GUARDED_BY(g_sink_mu);

void AppendJsonString(std::string& out, std::string_view s) { out += JsonQuote(s); }

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n <= 0) return;  // nowhere left to report a failing stderr
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

std::optional<LogLevel> ParseLogLevel(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  return std::nullopt;
}

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

void SetLogLevel(LogLevel level) { g_min_level.store(static_cast<int>(level)); }

void SetLogSink(std::function<void(std::string_view)> sink) {
  MutexLock lock(g_sink_mu);
  g_sink = std::move(sink);
}

void Logger::Log(LogLevel level, std::string_view message,
                 std::initializer_list<LogField> fields) const {
  if (static_cast<int>(level) < g_min_level.load(std::memory_order_relaxed)) return;
  std::string line;
  line.reserve(128 + message.size());
  line += "{\"time\":\"";
  line += Poco::DateTimeFormatter::format(Poco::Timestamp(), "%Y-%m-%dT%H:%M:%S.%iZ");
  line += "\",\"level\":\"";
  line += LogLevelName(level);
  line += "\",\"component\":";
  AppendJsonString(line, component_);
  line += ",\"message\":";
  AppendJsonString(line, message);
  for (const LogField& f : fields) {
    line += ',';
    AppendJsonString(line, f.key);
    line += ':';
    AppendJsonString(line, f.value);
  }
  line += "}\n";
  MutexLock lock(g_sink_mu);
  if (g_sink) {
    g_sink(line);
  } else {
    WriteAll(STDERR_FILENO, line);
  }
}

}  // namespace treaty
