// Per-tenant quotas: token buckets for requests per minute and tokens per minute, and a
// count of requests in flight. A bucket holds a minute's allowance and refills
// continuously; tokens are charged after the answer (from its usage), so the token
// bucket may go below zero, and a tenant in deficit is refused until it refills.
// Thread safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "gateway/tenants.h"

namespace sluice::gateway {

// What OpenAI's x-ratelimit-* headers report.
struct QuotaSnapshot {
  int64_t limit_requests = 0, remaining_requests = 0;  // limit 0: unlimited
  int64_t limit_tokens = 0, remaining_tokens = 0;
  double reset_requests_s = 0, reset_tokens_s = 0;  // until the bucket is full again
};

enum class Refusal { kNone, kConcurrency, kRequests, kTokens };
const char* RefusalName(Refusal r);

struct Admission {
  Refusal refusal = Refusal::kNone;
  double retry_after_s = 0;  // when refused: until the limit would admit one request
  QuotaSnapshot snapshot;
};

class QuotaManager {
 public:
  using Clock = std::function<double()>;  // seconds, monotonic
  explicit QuotaManager(Clock clock = nullptr);

  // Admits one request of `t` (taking a request and a concurrency slot) or says which
  // limit refuses it and for how long.
  Admission Acquire(const Tenant& t);
  // The admitted request finished: frees its slot and charges `tokens`.
  void Release(const Tenant& t, int64_t tokens);
  QuotaSnapshot Snapshot(const Tenant& t);
  int64_t InFlight(const std::string& tenant);

 private:
  struct State {
    double requests = 0, tokens = 0;  // bucket levels
    double last = 0;                  // time of the last refill
    int64_t in_flight = 0;
    bool initialised = false;
  };
  State& Refill(const Tenant& t, double now);  // REQUIRES: mu_ held
  QuotaSnapshot SnapshotLocked(const Tenant& t, const State& s) const;

  Clock clock_;
  std::mutex mu_;
  absl::flat_hash_map<std::string, State> states_;
};

// Go-style durations as OpenAI writes them: "250ms", "6s", "1m30s".
std::string FormatDuration(double seconds);

}  // namespace sluice::gateway
