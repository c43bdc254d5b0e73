#pragma once

// Structured logs: one JSON object a line on stderr, with time, level, component, message and
// any fields given (a transaction's "gid" among them). Thread-safe: each line is written whole.

#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace treaty {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

std::optional<LogLevel> ParseLogLevel(std::string_view name);
const char* LogLevelName(LogLevel level);

struct LogField {
  std::string_view key;
  std::string value;
};

// Lines below `level` are dropped. Default: info.
void SetLogLevel(LogLevel level);

// Replaces where lines go (default: stderr); for tests. An empty function restores stderr.
void SetLogSink(std::function<void(std::string_view line)> sink);

// A named source of log lines; cheap to copy.
class Logger {
 public:
  explicit Logger(std::string component) : component_(std::move(component)) {}

  void Log(LogLevel level, std::string_view message,
           std::initializer_list<LogField> fields = {}) const;
  void Debug(std::string_view m, std::initializer_list<LogField> f = {}) const {
    Log(LogLevel::kDebug, m, f);
  }
  void Info(std::string_view m, std::initializer_list<LogField> f = {}) const {
    Log(LogLevel::kInfo, m, f);
  }
  void Warn(std::string_view m, std::initializer_list<LogField> f = {}) const {
    Log(LogLevel::kWarn, m, f);
  }
  void Error(std::string_view m, std::initializer_list<LogField> f = {}) const {
    Log(LogLevel::kError, m, f);
  }

 private:
  std::string component_;
};

}  // namespace treaty
