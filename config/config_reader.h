#pragma once

// ConfigReader turns one YAML file into typed option values, shared by every Treaty process
// (treatyd, treaty-relay, the demo services) so that they all read config the same way:
//   - every key is optional and keeps the default already in the output variable;
//   - an environment variable overrides a key: "retry.initial" is TREATY_RETRY_INITIAL;
//   - unknown keys, wrong types and bad values are errors naming the file, the line and the key
//     ("treaty.yaml:7: retry.initial: ...") or the environment variable that carried the value.
//
// Usage: construct, call one typed reader per key, then Finish(), which reports every error
// found (one a line) and every key that no reader asked for. Not thread-safe.

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/duration.h"
#include "common/host_port.h"
#include "common/status.h"

namespace treaty {

// Looks up an environment variable; nullopt when unset.
using Environment = std::function<std::optional<std::string>(const std::string& name)>;

// The process's real environment.
Environment ProcessEnvironment();

// The text of the config file at `path` ("" when `path` is empty: every default); an error
// naming the file when it cannot be read.
Result<std::string> ReadConfigText(const std::string& path);

// The most a YAML file (a config or a saga definition) may hold, and the most nodes its aliases
// may expand to: a few hundred bytes of anchors and aliases describe an exponential tree, which
// walking would take minutes and gigabytes.
inline constexpr size_t kMaxYamlFileBytes = 1 << 20;
inline constexpr size_t kMaxYamlNodes = 100000;

// The whole file at `path` if it holds at most `max_bytes`; InvalidArgument naming the file
// otherwise (or when it cannot be read). Reads no more than that.
Result<std::string> ReadBoundedFile(const std::string& path, size_t max_bytes);

// InvalidArgument ("file:line: ...") when `root`, aliases followed, has more than `max_nodes`
// nodes; checked before anything walks the tree.
Status CheckYamlSize(const YAML::Node& root, const std::string& file,
                     size_t max_nodes = kMaxYamlNodes);

class ConfigReader {
 public:
  // `file` names the source in messages. YAML syntax errors are kept and reported by Finish().
  ConfigReader(std::string file, std::string_view yaml_text, Environment env,
               std::string env_prefix = "TREATY_");

  void String(std::string_view path, std::string* out);
  void NonEmptyString(std::string_view path, std::string* out);
  void OneOf(std::string_view path, std::string* out,
             std::initializer_list<std::string_view> allowed);
  void DurationAtLeast(std::string_view path, Duration* out, Duration min);
  void Double(std::string_view path, double* out, double min, double max);
  void Int(std::string_view path, int64_t* out, int64_t min, int64_t max);
  void Bool(std::string_view path, bool* out);
  // "host:port" with a port in [0, 65535]; host an IPv4 address or a name. Port 0 asks the OS.
  void Address(std::string_view path, HostPort* out);
  // An absolute URL with a host and one of `schemes`.
  void Url(std::string_view path, std::string* out,
           std::initializer_list<std::string_view> schemes);
  // A YAML sequence of strings; from the environment, a comma-separated list.
  void StringList(std::string_view path, std::vector<std::string>* out);
  // A list (as StringList) of URLs, each as Url() checks them; an error names the bad item.
  // False when it recorded an error.
  bool UrlList(std::string_view path, std::vector<std::string>* out,
               std::initializer_list<std::string_view> schemes);
  // Whether the file or the environment sets `path` at all (to tell a default from a choice).
  bool Present(std::string_view path) const;

  // Reports a problem with a key that was read successfully but fails a check across keys
  // (e.g. retry.max below retry.initial), located like any other error.
  void Fail(std::string_view path, std::string_view message);

  // OK, or InvalidArgument with one line per problem.
  Status Finish();

  // The name of the environment variable that overrides `path`.
  std::string EnvName(std::string_view path) const;

 private:
  struct Value {
    std::string text;      // the scalar's text
    std::string location;  // "file:line" or "environment variable NAME"
    bool from_env = false;
  };

  // Finds the value for `path`: environment first, then the file. Records an error and returns
  // nullopt when the file has something that is not a scalar there.
  std::optional<Value> Scalar(std::string_view path, std::string_view expected);
  // The node at `path`, or nullopt when the file has no such key.
  std::optional<YAML::Node> Find(std::string_view path) const;
  std::string LocationOf(const YAML::Node& node) const;
  void Error(const std::string& location, std::string_view path, std::string_view message);
  void CheckUnknownKeys(const YAML::Node& map, const std::string& prefix);

  std::string file_;
  Environment env_;
  std::string env_prefix_;
  YAML::Node root_;
  bool parsed_ = false;
  std::set<std::string, std::less<>> known_;  // every path a reader asked for
  std::vector<std::string> errors_;
};

}  // namespace treaty
