// Per-tenant prefix-cache salts that nobody can derive from a tenant's name: an HMAC of
// the name under a secret only the gateway holds. Whoever reaches the engine with a
// guessed salt then cannot share, and so time, a tenant's cached prefixes.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace sluice::gateway {

class SaltKey {
 public:
  // The secret in `path`, read as raw bytes (at least 16). A file that does not exist is
  // created, mode 0600, with 32 random bytes in hex. An empty path: a random secret held
  // in memory, so salts change when the gateway restarts.
  static absl::StatusOr<SaltKey> Load(const std::string& path);
  explicit SaltKey(std::string secret) : secret_(std::move(secret)) {}

  // "gw-" and the first 32 hex digits of HMAC-SHA256(secret, tenant).
  std::string CacheSalt(const std::string& tenant) const;

 private:
  std::string secret_;
};

}  // namespace sluice::gateway
