#include "coordinator/api/access_policy.h"

#include <Poco/SHA2Engine.h>

#include <cmath>
#include <cstring>

namespace treaty::api {
namespace {

using http::Access;
using http::ApiResponse;

template <typename Digest>
Digest Sha256(const std::string& text) {
  Poco::SHA2Engine engine(Poco::SHA2Engine::SHA_256);
  engine.update(text);
  const Poco::DigestEngine::Digest& d = engine.digest();
  Digest out{};
  std::memcpy(out.bytes, d.data(), std::min(d.size(), sizeof out.bytes));
  return out;
}

ApiResponse Unauthenticated(const std::string& message) {
  ApiResponse r = http::JsonError(401, "unauthenticated", message);
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"treaty\"");
  return r;
}

}  // namespace

AccessPolicy::AccessPolicy(std::vector<RoleToken> tokens, double rate_per_second, int64_t burst)
    : rate_(rate_per_second), burst_(static_cast<double>(burst)) {
  for (const RoleToken& t : tokens) {
    tokens_.emplace_back(Sha256<Digest>(t.token), t.admin);
    names_.push_back(t.name);
  }
}

std::string AccessPolicy::CallerName(const http::ApiRequest& request) const {
  const std::string address = request.remote.substr(0, request.remote.rfind(':'));
  auto header = request.headers.find("authorization");
  constexpr std::string_view kScheme = "Bearer ";
  if (tokens_.empty() || header == request.headers.end() ||
      header->second.compare(0, kScheme.size(), kScheme) != 0) {
    return "anonymous@" + address;
  }
  const Digest d = Sha256<Digest>(header->second.substr(kScheme.size()));
  std::string name;
  for (size_t k = 0; k < tokens_.size(); ++k) {
    if (std::memcmp(d.bytes, tokens_[k].first.bytes, sizeof d.bytes) == 0 && name.empty()) {
      name = names_[k];
    }
  }
  return name.empty() ? "unknown@" + address : name;
}

std::optional<bool> AccessPolicy::AdminOf(const Digest& d) const {
  // Digests have one length whatever was presented, and every token is compared to the end:
  // the time taken says nothing about how much of a token was right.
  std::optional<bool> role;
  for (const auto& [digest, admin] : tokens_) {
    unsigned char diff = 0;
    for (size_t i = 0; i < sizeof d.bytes; ++i)
      diff |= static_cast<unsigned char>(d.bytes[i] ^ digest.bytes[i]);
    if (diff == 0) role = role.value_or(false) || admin;
  }
  return role;
}

bool AccessPolicy::Take(const std::string& key, double* retry_after) {
  if (rate_ <= 0) return true;
  const auto now = std::chrono::steady_clock::now();
  MutexLock lock(mu_);
  if (buckets_.size() > 100000) buckets_.clear();  // bounded: a flood of addresses starts afresh
  auto [it, inserted] = buckets_.try_emplace(key, Bucket{burst_, now});
  Bucket& b = it->second;
  if (!inserted) {
    b.tokens =
        std::min(burst_, b.tokens + rate_ * std::chrono::duration<double>(now - b.at).count());
    b.at = now;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return true;
  }
  *retry_after = (1 - b.tokens) / rate_;
  return false;
}

std::optional<ApiResponse> AccessPolicy::Check(const http::ApiRequest& request, Access access) {
  if (access == Access::kPublic) return std::nullopt;
  std::string caller;
  if (!tokens_.empty()) {
    auto header = request.headers.find("authorization");
    if (header == request.headers.end()) {
      return Unauthenticated("this endpoint needs a token: Authorization: Bearer <token>");
    }
    const std::string& value = header->second;
    constexpr std::string_view kScheme = "Bearer ";
    if (value.size() <= kScheme.size() || value.compare(0, kScheme.size(), kScheme) != 0) {
      return Unauthenticated("the Authorization header must be \"Bearer <token>\"");
    }
    const Digest d = Sha256<Digest>(value.substr(kScheme.size()));
    std::optional<bool> admin = AdminOf(d);
    if (!admin) return Unauthenticated("the token is not valid");
    if (access == Access::kAdmin && !*admin) {
      return http::JsonError(403, "forbidden", "this endpoint needs an admin token");
    }
    // The bucket is keyed by the token's digest: no token is kept in memory longer than needed.
    caller.assign(reinterpret_cast<const char*>(d.bytes), sizeof d.bytes);
  } else {
    caller = request.remote.substr(0, request.remote.rfind(':'));
  }
  double retry_after = 0;
  if (!Take(caller, &retry_after)) {
    ApiResponse r =
        http::JsonError(429, "too_many_requests",
                        "over the request rate allowed per caller (limits.rate_per_second)");
    r.headers.emplace_back("Retry-After", std::to_string(static_cast<int>(std::ceil(retry_after))));
    return r;
  }
  return std::nullopt;
}

}  // namespace treaty::api
