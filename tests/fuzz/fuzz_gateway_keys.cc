// The gateway's keys file through TenantTable::Parse: a file it refuses gets an error
// naming the file; a table it accepts has named tenants with non-negative limits, and
// looks keys up without fault.
#include <cstdint>
#include <string>

#include "gateway/tenants.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto table = sluice::gateway::TenantTable::Parse(text, "fuzz/keys.json");
  if (!table.ok()) {
    FUZZ_CHECK(table.status().message().find("fuzz/keys.json") != std::string::npos);
    return 0;
  }
  for (const auto& t : (*table)->tenants()) {
    FUZZ_CHECK(!t.name.empty());
    FUZZ_CHECK(t.requests_per_minute >= 0 && t.tokens_per_minute >= 0 && t.max_concurrent >= 0);
  }
  if ((*table)->tenants().empty()) FUZZ_CHECK(!(*table)->Find(text).has_value());
  (void)(*table)->Find(text);
  return 0;
}
