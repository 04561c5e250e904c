#include "gateway/tenants.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace sluice::gateway {
namespace {

bool ParseHex(const std::string& hex, Digest* out) {
  if (hex.size() != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

}  // namespace

Digest Sha256(const std::string& data) {
  Digest d{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

std::string Hex(const Digest& d) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (uint8_t b : d) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::string BearerKey(const std::string& authorization) {
  const std::string prefix = "bearer ";
  if (authorization.size() <= prefix.size() || !absl::StartsWithIgnoreCase(authorization, prefix)) {
    return "";
  }
  return std::string(absl::StripAsciiWhitespace(authorization.substr(prefix.size())));
}

absl::StatusOr<std::shared_ptr<const TenantTable>> TenantTable::Parse(const std::string& text,
                                                                      const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range (1e999)
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON: ", e.what()));
  }
  if (!j.is_object() || !j.contains("tenants") || !j["tenants"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected an object with a \"tenants\" array"));
  }
  auto table = std::make_shared<TenantTable>();
  std::set<std::string> names, digests;
  for (size_t i = 0; i < j["tenants"].size(); ++i) {
    const nlohmann::json& t = j["tenants"][i];
    const std::string where = absl::StrCat(source, ": tenants[", i, "]");
    if (!t.is_object()) return absl::InvalidArgumentError(where + " is not an object");
    Tenant out;
    if (!t.contains("name") || !t["name"].is_string() || t["name"].get<std::string>().empty()) {
      return absl::InvalidArgumentError(where + ": \"name\" must be a non-empty string");
    }
    out.name = t["name"].get<std::string>();
    if (!t.contains("key_sha256") || !t["key_sha256"].is_string() ||
        !ParseHex(t["key_sha256"].get<std::string>(), &out.key_sha256)) {
      return absl::InvalidArgumentError(
          where + ": \"key_sha256\" must be the 64 hex digits of the key's SHA-256");
    }
    for (const auto& [field, value] :
         {std::pair<const char*, int64_t*>{"requests_per_minute", &out.requests_per_minute},
          {"tokens_per_minute", &out.tokens_per_minute},
          {"max_concurrent", &out.max_concurrent},
          {"max_concurrent_sequences", &out.max_concurrent_sequences}}) {
      if (!t.contains(field)) continue;
      if (!t[field].is_number_integer() || t[field].get<int64_t>() < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": \"", field, "\" must be a non-negative integer"));
      }
      *value = t[field].get<int64_t>();
    }
    if (!t.contains("max_concurrent_sequences")) {
      // A limit too large to multiply is as good as none.
      out.max_concurrent_sequences =
          out.max_concurrent > std::numeric_limits<int64_t>::max() / kSequencesPerRequest
              ? 0
              : out.max_concurrent * kSequencesPerRequest;
    }
    if (!names.insert(out.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tenant \"", out.name, "\" appears twice"));
    }
    if (!digests.insert(Hex(out.key_sha256)).second) {
      return absl::InvalidArgumentError(where + ": the same key is given to two tenants");
    }
    table->tenants_.push_back(std::move(out));
  }
  return std::shared_ptr<const TenantTable>(std::move(table));
}

absl::StatusOr<std::shared_ptr<const TenantTable>> TenantTable::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open keys file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path);
}

std::optional<Tenant> TenantTable::Find(const std::string& key) const {
  if (key.empty()) return std::nullopt;
  const Digest d = Sha256(key);
  // Every digest is compared, each in constant time: no early exit tells which matched.
  int found = -1;
  for (size_t i = 0; i < tenants_.size(); ++i) {
    const bool match = CRYPTO_memcmp(d.data(), tenants_[i].key_sha256.data(), d.size()) == 0;
    found = match ? static_cast<int>(i) : found;
  }
  if (found < 0) return std::nullopt;
  return tenants_[found];
}

}  // namespace sluice::gateway
