#include "coordinator/api/url_allowlist.h"

#include <Poco/Exception.h>
#include <Poco/String.h>
#include <Poco/URI.h>

#include "config/treaty_config.h"

namespace treaty::api {
namespace {

// Whether the URL's path has a "." or ".." segment, written out or percent-encoded (%2e, and
// %2f for the slashes around it): a server resolves those against the path before it, so
// "http://host/treaty/../admin" is "http://host/admin", whatever its text starts with.
bool HasDotSegment(const std::string& raw_path) {
  std::string path;
  try {
    Poco::URI::decode(raw_path, path);
  } catch (const Poco::Exception&) {
    return true;  // undecodable: refused, as if it hid one
  }
  for (char& c : path) {
    if (c == '\\') c = '/';  // some servers take a backslash for a slash
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string_view segment(path.data() + start, end - start);
    // Some servers (Tomcat, Spring) drop a segment's ";parameters" before resolving dots.
    segment = segment.substr(0, segment.find(';'));
    if (segment == "." || segment == "..") return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

UrlAllowlist::UrlAllowlist(std::vector<std::string> entries) : entries_(std::move(entries)) {
  for (std::string& e : entries_) {
    if (e.find("://") == std::string::npos) e = Poco::toLower(e);
  }
}

bool UrlAllowlist::Allows(const std::string& url) const {
  std::string host, normalized, raw_path;
  uint16_t port = 0;
  try {
    Poco::URI uri(url);
    if (uri.getScheme() != "http" && uri.getScheme() != "https") return false;
    host = Poco::toLower(uri.getHost());
    port = uri.getPort();
    if (!uri.getUserInfo().empty()) return false;  // user@host tricks are refused outright
    raw_path = uri.getPath();  // decoded by Poco; decoded once more below (double encoding)
    normalized = uri.toString();
  } catch (const Poco::Exception&) {
    return false;
  }
  if (host.empty()) return false;
  const std::string host_port = host + ":" + std::to_string(port);
  for (const std::string& e : entries_) {
    if (e == "loopback") {
      if (IsLoopbackHost(host)) return true;
    } else if (e.find("://") != std::string::npos) {
      // A prefix ends at a path boundary: "http://a/x/" does not admit "http://a/xy"; and a path
      // that climbs out of it ("http://a/x/../admin") is never under it.
      if (HasDotSegment(raw_path)) continue;
      if (normalized.rfind(e, 0) == 0 &&
          (e.back() == '/' || normalized.size() == e.size() || normalized[e.size()] == '/' ||
           normalized[e.size()] == '?')) {
        return true;
      }
    } else if (e.size() > 2 && e[0] == '*' && e[1] == '.') {
      const std::string suffix = e.substr(1);
      if (host.size() > suffix.size() &&
          host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0) {
        return true;
      }
    } else if (e == host || e == host_port) {
      return true;
    }
  }
  return false;
}

}  // namespace treaty::api
