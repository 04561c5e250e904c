#include "gateway/salt.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/tenants.h"

namespace sluice::gateway {
namespace {

constexpr size_t kMinSecretBytes = 16;

// 32 random bytes, in hex.
absl::StatusOr<std::string> RandomSecret() {
  Digest raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    return absl::InternalError("no random bytes for the salt secret");
  }
  return Hex(raw);
}

}  // namespace

absl::StatusOr<SaltKey> SaltKey::Load(const std::string& path) {
  if (path.empty()) {
    auto secret = RandomSecret();
    if (!secret.ok()) return secret.status();
    return SaltKey(*secret);
  }
  if (access(path.c_str(), F_OK) != 0) {
    auto secret = RandomSecret();
    if (!secret.ok()) return secret.status();
    // O_EXCL: two gateways starting together never overwrite each other's secret.
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) {
      const bool written =
          write(fd, secret->data(), secret->size()) == static_cast<ssize_t>(secret->size());
      close(fd);
      if (!written) {
        return absl::InternalError(absl::StrCat("--salt-secret-file ", path, ": cannot write"));
      }
      return SaltKey(*secret);
    }
    if (errno != EEXIST) {
      return absl::FailedPreconditionError(
          absl::StrCat("--salt-secret-file ", path, ": cannot create it: ", std::strerror(errno)));
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("--salt-secret-file ", path, ": cannot read it"));
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (bytes.str().size() < kMinSecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat("--salt-secret-file ", path, ": holds ",
                                                   bytes.str().size(), " bytes; at least ",
                                                   kMinSecretBytes, " are needed"));
  }
  return SaltKey(bytes.str());
}

std::string SaltKey::CacheSalt(const std::string& tenant) const {
  Digest mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(tenant.data()), tenant.size(), mac.data(), &len);
  return "gw-" + Hex(mac).substr(0, 32);
}

}  // namespace sluice::gateway
