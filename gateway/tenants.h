// Tenants and their API keys, from the keys file:
//   {"tenants": [{"name": "acme", "key_sha256": "<64 hex>", "requests_per_minute": 60,
//                 "tokens_per_minute": 100000, "max_concurrent": 4,
//                 "max_concurrent_sequences": 64}]}
// Keys are held only as SHA-256 digests; a presented key is hashed and compared with
// every tenant's digest in constant time. A limit that is absent or 0 is no limit, but
// for max_concurrent_sequences, which is max_concurrent × 16 when absent.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice::gateway {

using Digest = std::array<uint8_t, 32>;

struct Tenant {
  std::string name;
  Digest key_sha256{};
  int64_t requests_per_minute = 0;
  int64_t tokens_per_minute = 0;
  int64_t max_concurrent = 0;
  int64_t max_concurrent_sequences = 0;  // prompts × n of the requests in flight
};

// A tenant's default sequence limit: one request may fan out 16 ways (the engine's most
// for n) without taking more than its share of slots.
inline constexpr int64_t kSequencesPerRequest = 16;

class TenantTable {
 public:
  // Parses the keys file's text; `source` names it in errors, which say what is wrong
  // and where (tenant index and field).
  static absl::StatusOr<std::shared_ptr<const TenantTable>> Parse(const std::string& text,
                                                                  const std::string& source);
  static absl::StatusOr<std::shared_ptr<const TenantTable>> Load(const std::string& path);

  // The tenant whose key this is, if any. Takes the same time whichever tenant matches
  // and whether one does.
  std::optional<Tenant> Find(const std::string& key) const;

  const std::vector<Tenant>& tenants() const { return tenants_; }

 private:
  std::vector<Tenant> tenants_;
};

Digest Sha256(const std::string& data);
std::string Hex(const Digest& d);

// The key from an `Authorization: Bearer <key>` header value; empty if malformed.
std::string BearerKey(const std::string& authorization);

}  // namespace sluice::gateway
