#pragma once

// The participants treatyd may call (participants.allow): every branch, query and saga step URL
// is checked against it when a transaction is submitted, so that no client can turn treatyd
// against the network it sits in.

#include <string>
#include <vector>

namespace treaty::api {

class UrlAllowlist {
 public:
  // Entries: "loopback" (localhost, 127.0.0.0/8, ::1), a host name or address ("inventory",
  // "10.0.0.7"), a host with a port ("inventory:8502"), a host suffix ("*.svc.cluster.local"), or
  // a URL prefix ("https://pay.example.com/treaty/"). Host names compare case-insensitively.
  explicit UrlAllowlist(std::vector<std::string> entries);

  // True when `url` (absolute http or https) matches an entry. Thread-safe.
  bool Allows(const std::string& url) const;

  const std::vector<std::string>& entries() const { return entries_; }

 private:
  std::vector<std::string> entries_;
};

}  // namespace treaty::api
