#pragma once

// Who may use treatyd's API, and how often: the router's guard (see http::Guard).
//
// With no tokens configured every request is let in (treatyd then listens on loopback only, or
// auth.none was set on purpose). Otherwise a non-public route needs "Authorization: Bearer T":
// no or an unknown token is 401, a client token on an admin route 403. Tokens are compared in
// constant time. Every caller (its token, or its address without tokens) gets a token bucket:
// beyond it, 429 with Retry-After.

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/http/router.h"
#include "common/thread_annotations.h"
#include "config/treaty_config.h"

namespace treaty::api {

class AccessPolicy {
 public:
  // `tokens` from LoadTokens(). `rate_per_second` 0: no rate limit.
  AccessPolicy(std::vector<RoleToken> tokens, double rate_per_second, int64_t burst);

  // The guard: nullopt lets the request through. Thread-safe.
  std::optional<http::ApiResponse> Check(const http::ApiRequest& request, http::Access access);

  // Who made `request` (which Check let through), for the decision log: its token's name
  // (RoleToken::name), or with no tokens configured "anonymous@<address>". Thread-safe.
  std::string CallerName(const http::ApiRequest& request) const;

 private:
  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point at;
  };
  struct Digest {
    unsigned char bytes[32];
  };
  // The role of the token with this digest, or nullopt; looks at every configured token whatever
  // matches.
  std::optional<bool> AdminOf(const Digest& presented) const;
  // False when `key` has used up its bucket; `retry_after` then says when to come back.
  bool Take(const std::string& key, double* retry_after);

  std::vector<std::pair<Digest, bool>> tokens_;  // SHA-256 of each token, admin?
  std::vector<std::string> names_;               // each token's name, in the same order
  const double rate_;
  const double burst_;
  Mutex mu_;
  std::map<std::string, Bucket> buckets_ GUARDED_BY(mu_);
};

}  // namespace treaty::api
