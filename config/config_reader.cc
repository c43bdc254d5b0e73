#include "config/config_reader.h"

#include <Poco/Exception.h>
#include <Poco/URI.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace treaty {
namespace {

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    parts.emplace_back(path.substr(start, dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

const char* KindName(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "nothing";
    default:
      return "a value";
  }
}

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

bool ValidHostName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

}  // namespace

Result<std::string> ReadConfigText(const std::string& path) {
  if (path.empty()) return std::string();
  if (!std::ifstream(path)) return Status::InvalidArgument(path + ": cannot read the config file");
  return ReadBoundedFile(path, kMaxYamlFileBytes);
}

Result<std::string> ReadBoundedFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument(path + ": cannot read the file");
  std::string text(max_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return Status::InvalidArgument(path + ": cannot read the file");
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > max_bytes) {
    return Status::InvalidArgument(path + ": the file is larger than " + std::to_string(max_bytes) +
                                   " bytes, the most it may hold");
  }
  return text;
}

Status CheckYamlSize(const YAML::Node& root, const std::string& file, size_t max_nodes) {
  // Depth first, every alias walked again as a reader of the tree would: the count is what a
  // walk costs, and it stops as soon as the budget is spent.
  std::vector<YAML::Node> todo{root};
  size_t seen = 0;
  while (!todo.empty()) {
    YAML::Node n = todo.back();
    todo.pop_back();
    if (++seen > max_nodes) {
      return Status::InvalidArgument(
          file + ":" + std::to_string(n.Mark().line + 1) + ": the document expands to more than " +
          std::to_string(max_nodes) + " nodes (anchors and aliases included)");
    }
    if (n.IsMap()) {
      for (auto it = n.begin(); it != n.end(); ++it) {
        todo.push_back(it->first);
        todo.push_back(it->second);
      }
    } else if (n.IsSequence()) {
      for (auto it = n.begin(); it != n.end(); ++it) todo.push_back(*it);
    }
  }
  return Status::Ok();
}

Environment ProcessEnvironment() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe): read at start-up
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

ConfigReader::ConfigReader(std::string file, std::string_view yaml_text, Environment env,
                           std::string env_prefix)
    : file_(std::move(file)), env_(std::move(env)), env_prefix_(std::move(env_prefix)) {
  try {
    root_ = YAML::Load(std::string(yaml_text));
    parsed_ = true;
  } catch (const YAML::ParserException& e) {
    errors_.push_back(file_ + ":" + std::to_string(e.mark.line + 1) + ": not valid YAML: " + e.msg);
    return;
  }
  if (Status s = CheckYamlSize(root_, file_); !s.ok()) {
    errors_.push_back(s.message());
    root_ = YAML::Node();
    parsed_ = false;
    return;
  }
  if (root_.IsNull() || !root_.IsDefined()) {
    root_ = YAML::Node(YAML::NodeType::Map);  // an empty file: every default
  } else if (!root_.IsMap()) {
    errors_.push_back(LocationOf(root_) + ": the file must be a mapping of keys, found " +
                      KindName(root_));
    parsed_ = false;
  }
}

std::string ConfigReader::EnvName(std::string_view path) const {
  std::string name = env_prefix_;
  for (char c : path) {
    name += (c == '.' || c == '-') ? '_'
                                   : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return name;
}

std::string ConfigReader::LocationOf(const YAML::Node& node) const {
  return file_ + ":" + std::to_string(node.Mark().line + 1);
}

void ConfigReader::Error(const std::string& location, std::string_view path,
                         std::string_view message) {
  errors_.push_back(location + ": " + std::string(path) + ": " + std::string(message));
}

std::optional<YAML::Node> ConfigReader::Find(std::string_view path) const {
  if (!parsed_) return std::nullopt;
  // yaml-cpp's operator[] on a const node never inserts; assignment would rebind, so copy.
  std::vector<YAML::Node> chain{root_};
  for (const std::string& part : SplitPath(path)) {
    const YAML::Node& cur = chain.back();
    if (!cur.IsMap()) return std::nullopt;
    const YAML::Node next = cur[part];
    if (!next.IsDefined()) return std::nullopt;
    chain.push_back(next);
  }
  return chain.back();
}

std::optional<ConfigReader::Value> ConfigReader::Scalar(std::string_view path,
                                                        std::string_view expected) {
  known_.emplace(path);
  std::string env_name = EnvName(path);
  if (env_) {
    if (auto v = env_(env_name)) return Value{*v, "environment variable " + env_name, true};
  }
  if (!parsed_) return std::nullopt;
  // A parent that is not a mapping ("retry: 5") is reported once, at the parent.
  auto parts = SplitPath(path);
  std::string prefix;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    prefix += (i ? "." : "") + parts[i];
    std::optional<YAML::Node> parent = Find(prefix);
    if (!parent || parent->IsNull()) return std::nullopt;
    if (!parent->IsMap()) {
      std::string msg = std::string("expected a mapping, found ") + KindName(*parent);
      std::string line = LocationOf(*parent) + ": " + prefix + ": " + msg;
      if (std::find(errors_.begin(), errors_.end(), line) == errors_.end()) errors_.push_back(line);
      return std::nullopt;
    }
  }
  std::optional<YAML::Node> node = Find(path);
  if (!node) return std::nullopt;
  if (!node->IsScalar()) {
    Error(LocationOf(*node), path,
          "expected " + std::string(expected) + ", found " + KindName(*node));
    return std::nullopt;
  }
  return Value{node->Scalar(), LocationOf(*node), false};
}

void ConfigReader::String(std::string_view path, std::string* out) {
  if (auto v = Scalar(path, "a string")) *out = v->text;
}

void ConfigReader::NonEmptyString(std::string_view path, std::string* out) {
  if (auto v = Scalar(path, "a string")) {
    if (v->text.empty()) {
      Error(v->location, path, "must not be empty");
    } else {
      *out = v->text;
    }
  }
}

void ConfigReader::OneOf(std::string_view path, std::string* out,
                         std::initializer_list<std::string_view> allowed) {
  auto v = Scalar(path, "a string");
  if (!v) return;
  if (std::find(allowed.begin(), allowed.end(), v->text) != allowed.end()) {
    *out = v->text;
    return;
  }
  std::string list;
  for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
  Error(v->location, path, Quote(v->text) + " is not one of: " + list);
}

void ConfigReader::DurationAtLeast(std::string_view path, Duration* out, Duration min) {
  auto v = Scalar(path, "a duration");
  if (!v) return;
  auto d = ParseDuration(v->text);
  if (!d) {
    Error(v->location, path, Quote(v->text) + " is not a duration (write e.g. 200ms, 30s, 5m)");
  } else if (*d < min) {
    Error(v->location, path,
          Quote(v->text) + " is too short (at least " + FormatDuration(min) + ")");
  } else {
    *out = *d;
  }
}

void ConfigReader::Double(std::string_view path, double* out, double min, double max) {
  auto v = Scalar(path, "a number");
  if (!v) return;
  double d = 0;
  auto [end, ec] = std::from_chars(v->text.data(), v->text.data() + v->text.size(), d);
  if (ec != std::errc() || end != v->text.data() + v->text.size()) {
    Error(v->location, path, Quote(v->text) + " is not a number");
  } else if (d < min || d > max) {
    char range[64];
    std::snprintf(range, sizeof range, "between %g and %g", min, max);
    Error(v->location, path, Quote(v->text) + " is out of range (" + range + ")");
  } else {
    *out = d;
  }
}

void ConfigReader::Int(std::string_view path, int64_t* out, int64_t min, int64_t max) {
  auto v = Scalar(path, "a whole number");
  if (!v) return;
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v->text.data(), v->text.data() + v->text.size(), n);
  if (ec != std::errc() || end != v->text.data() + v->text.size()) {
    Error(v->location, path, Quote(v->text) + " is not a whole number");
  } else if (n < min || n > max) {
    Error(v->location, path,
          Quote(v->text) + " is out of range (" + std::to_string(min) + " to " +
              std::to_string(max) + ")");
  } else {
    *out = n;
  }
}

void ConfigReader::Bool(std::string_view path, bool* out) {
  auto v = Scalar(path, "true or false");
  if (!v) return;
  if (v->text == "true") {
    *out = true;
  } else if (v->text == "false") {
    *out = false;
  } else {
    Error(v->location, path, Quote(v->text) + " is not true or false");
  }
}

void ConfigReader::Address(std::string_view path, HostPort* out) {
  auto v = Scalar(path, "an address");
  if (!v) return;
  const std::string& t = v->text;
  size_t colon = t.rfind(':');
  std::string bad = Quote(t) + " is not an address (write host:port, e.g. 127.0.0.1:8420)";
  if (colon == std::string::npos || colon == 0 || colon + 1 == t.size()) {
    Error(v->location, path, bad);
    return;
  }
  std::string host = t.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(t.data() + colon + 1, t.data() + t.size(), port);
  if (ec != std::errc() || end != t.data() + t.size() || port > 65535 ||
      (!ValidHostName(host) && host.find(':') == std::string::npos)) {
    Error(v->location, path, bad);
    return;
  }
  *out = HostPort{host, static_cast<uint16_t>(port)};
}

namespace {

// Why `text` is not an absolute URL with a host and one of `schemes`; "" when it is.
std::string UrlProblem(const std::string& text, std::initializer_list<std::string_view> schemes) {
  std::string schemes_text;
  for (std::string_view s : schemes)
    schemes_text += (schemes_text.empty() ? "" : " or ") + std::string(s) + "://";
  // libpq's multi-host form, postgresql://user@h1:5432,h2:5433/db?target_session_attrs=...
  // (a failover pair, docs/deployment.md): each host is checked as the one-host URL it stands
  // for, which Poco::URI can parse.
  std::vector<std::string> urls{text};
  const size_t scheme_end = text.find("://");
  if (scheme_end != std::string::npos) {
    const std::string scheme = text.substr(0, scheme_end);
    const size_t authority = scheme_end + 3;
    const size_t authority_end = std::min(text.find('/', authority), text.find('?', authority));
    const std::string auth =
        text.substr(authority, authority_end == std::string::npos ? std::string::npos
                                                                  : authority_end - authority);
    const size_t at = auth.rfind('@');
    const std::string hosts = at == std::string::npos ? auth : auth.substr(at + 1);
    if ((scheme == "postgresql" || scheme == "postgres") && hosts.find(',') != std::string::npos) {
      const std::string user = at == std::string::npos ? "" : auth.substr(0, at + 1);
      const std::string rest = authority_end == std::string::npos ? "" : text.substr(authority_end);
      urls.clear();
      size_t start = 0;
      while (true) {
        const size_t comma = hosts.find(',', start);
        urls.push_back(scheme + "://" + user +
                       hosts.substr(start, comma == std::string::npos ? comma : comma - start) +
                       rest);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    }
  }
  for (const std::string& url : urls) {
    try {
      Poco::URI uri(url);
      if (std::find(schemes.begin(), schemes.end(), uri.getScheme()) == schemes.end()) {
        return "URL must start with " + schemes_text;
      }
      if (uri.getHost().empty()) {
        return urls.size() > 1 ? "URL has an empty host in its list" : "URL has no host";
      }
    } catch (const Poco::Exception& e) {
      return "not a valid URL (" + e.message() + ")";
    }
  }
  return "";
}

}  // namespace

void ConfigReader::Url(std::string_view path, std::string* out,
                       std::initializer_list<std::string_view> schemes) {
  auto v = Scalar(path, "a URL");
  if (!v) return;
  if (std::string problem = UrlProblem(v->text, schemes); !problem.empty()) {
    Error(v->location, path, problem);
    return;
  }
  *out = v->text;
}

bool ConfigReader::UrlList(std::string_view path, std::vector<std::string>* out,
                           std::initializer_list<std::string_view> schemes) {
  std::vector<std::string> items = *out;
  const size_t errors_before = errors_.size();
  StringList(path, &items);
  if (errors_.size() != errors_before) return false;
  const std::string env_name = EnvName(path);
  const bool from_env = env_ && env_(env_name);
  std::optional<YAML::Node> node = from_env ? std::nullopt : Find(path);
  bool bad = false;
  for (size_t i = 0; i < items.size(); ++i) {
    if (std::string problem = UrlProblem(items[i], schemes); !problem.empty()) {
      const std::string location = from_env ? "environment variable " + env_name
                                   : node && node->IsSequence() && i < node->size()
                                       ? LocationOf((*node)[i])
                                       : file_;
      Error(location, path, "item " + std::to_string(i) + ": " + problem);
      bad = true;
    }
  }
  if (!bad) *out = std::move(items);
  return !bad;
}

bool ConfigReader::Present(std::string_view path) const {
  if (env_ && env_(EnvName(path))) return true;
  std::optional<YAML::Node> node = Find(path);
  return node && !node->IsNull();
}

void ConfigReader::StringList(std::string_view path, std::vector<std::string>* out) {
  known_.emplace(path);
  std::string env_name = EnvName(path);
  if (env_) {
    if (auto v = env_(env_name)) {
      out->clear();
      size_t start = 0;
      while (start <= v->size()) {
        size_t comma = v->find(',', start);
        std::string item =
            v->substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (!item.empty()) out->push_back(item);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      return;
    }
  }
  std::optional<YAML::Node> node = Find(path);
  if (!node || node->IsNull()) return;
  if (!node->IsSequence()) {
    Error(LocationOf(*node), path, std::string("expected a list, found ") + KindName(*node));
    return;
  }
  std::vector<std::string> items;
  for (const YAML::Node& item : *node) {
    if (!item.IsScalar()) {
      Error(LocationOf(item), path,
            std::string("list items must be strings, found ") + KindName(item));
      return;
    }
    items.push_back(item.Scalar());
  }
  *out = std::move(items);
}

void ConfigReader::Fail(std::string_view path, std::string_view message) {
  std::string env_name = EnvName(path);
  if (env_ && env_(env_name)) {
    Error("environment variable " + env_name, path, message);
    return;
  }
  std::optional<YAML::Node> node = Find(path);
  Error(node ? LocationOf(*node) : file_, path, message);
}

void ConfigReader::CheckUnknownKeys(const YAML::Node& map, const std::string& prefix) {
  for (auto it = map.begin(); it != map.end(); ++it) {
    std::string key = it->first.Scalar();
    std::string path = prefix.empty() ? key : prefix + "." + key;
    if (known_.count(path)) continue;
    // A section: some known path lies below it.
    auto below = known_.lower_bound(path + ".");
    if (below != known_.end() && below->rfind(path + ".", 0) == 0) {
      if (it->second.IsMap()) CheckUnknownKeys(it->second, path);
      continue;
    }
    std::set<std::string> siblings;
    for (const std::string& k : known_) {
      if (!prefix.empty() && k.rfind(prefix + ".", 0) != 0) continue;
      std::string rest = prefix.empty() ? k : k.substr(prefix.size() + 1);
      siblings.insert(rest.substr(0, rest.find('.')));
    }
    std::string list;
    for (const std::string& s : siblings) list += (list.empty() ? "" : ", ") + s;
    Error(LocationOf(it->first), path, "unknown key (expected one of: " + list + ")");
  }
}

Status ConfigReader::Finish() {
  if (parsed_) CheckUnknownKeys(root_, "");
  if (errors_.empty()) return Status::Ok();
  std::string all;
  for (const std::string& e : errors_) all += (all.empty() ? "" : "\n") + e;
  return Status::InvalidArgument(all);
}

}  // namespace treaty
