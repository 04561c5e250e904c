// Per-tenant quotas: token buckets for requests per minute and tokens per minute, and
// counts of the requests and sequences (prompts × n) in flight. A bucket holds a minute's
// allowance and refills continuously.
//
// Tokens are reserved before a request is admitted: its expected cost (estimated prompt
// tokens + max_tokens × sequences) must fit in what the bucket holds now, and is taken
// from it at once, so a burst cannot overspend the minute. While the answer streams, use
// beyond the reservation is charged as it is reported (Charge); at the end the
// reservation is settled against the real usage (Release), returning what was not used.
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

enum class Refusal { kNone, kConcurrency, kSequences, kRequests, kTokens };
const char* RefusalName(Refusal r);

// What one request takes while in flight.
struct Cost {
  int64_t tokens = 0;     // reserved from the token bucket
  int64_t sequences = 0;  // counted against max_concurrent_sequences
};

struct Admission {
  Refusal refusal = Refusal::kNone;
  // The request asks more than the limit allows at all (tokens beyond a minute's
  // allowance, sequences beyond the cap): waiting will not help.
  bool never = false;
  double retry_after_s = 0;  // when refused (and not `never`): until the limit would admit it
  QuotaSnapshot snapshot;
};

class QuotaManager {
 public:
  using Clock = std::function<double()>;  // seconds, monotonic
  explicit QuotaManager(Clock clock = nullptr);

  // Admits one request of `t` costing `cost` (taking a request, a concurrency slot, its
  // sequences and its token reservation) or says which limit refuses it and for how long.
  Admission Acquire(const Tenant& t, const Cost& cost);
  // Takes `tokens` more from the bucket of an admitted request that went past its
  // reservation. The bucket may go below zero; the tenant is refused until it refills.
  void Charge(const Tenant& t, int64_t tokens);
  // The admitted request finished: frees its slot and sequences, and gives back `refund`
  // tokens of what was taken for it (negative: takes that many more).
  void Release(const Tenant& t, const Cost& cost, int64_t refund);
  QuotaSnapshot Snapshot(const Tenant& t);
  int64_t InFlight(const std::string& tenant);
  int64_t SequencesInFlight(const std::string& tenant);

 private:
  struct State {
    double requests = 0, tokens = 0;  // bucket levels
    double last = 0;                  // time of the last refill
    int64_t in_flight = 0;
    int64_t sequences = 0;
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
