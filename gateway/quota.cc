#include "gateway/quota.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace sluice::gateway {

const char* RefusalName(Refusal r) {
  switch (r) {
    case Refusal::kNone:
      return "none";
    case Refusal::kConcurrency:
      return "concurrency";
    case Refusal::kSequences:
      return "sequences";
    case Refusal::kRequests:
      return "requests";
    case Refusal::kTokens:
      return "tokens";
  }
  return "unknown";
}

QuotaManager::QuotaManager(Clock clock) : clock_(std::move(clock)) {
  if (!clock_) {
    clock_ = [] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
  }
}

QuotaManager::State& QuotaManager::Refill(const Tenant& t, double now) {
  State& s = states_[t.name];
  if (!s.initialised) {
    s.requests = static_cast<double>(t.requests_per_minute);
    s.tokens = static_cast<double>(t.tokens_per_minute);
    s.last = now;
    s.initialised = true;
    return s;
  }
  const double dt = std::max(0.0, now - s.last);
  s.last = now;
  // Limits may change on a reload: the levels are clamped to the current capacity.
  s.requests =
      std::min<double>(t.requests_per_minute, s.requests + dt * t.requests_per_minute / 60);
  s.tokens = std::min<double>(t.tokens_per_minute, s.tokens + dt * t.tokens_per_minute / 60);
  return s;
}

QuotaSnapshot QuotaManager::SnapshotLocked(const Tenant& t, const State& s) const {
  QuotaSnapshot q;
  q.limit_requests = t.requests_per_minute;
  q.limit_tokens = t.tokens_per_minute;
  if (t.requests_per_minute > 0) {
    q.remaining_requests = std::max<int64_t>(0, static_cast<int64_t>(std::floor(s.requests)));
    q.reset_requests_s = (t.requests_per_minute - s.requests) * 60.0 / t.requests_per_minute;
  }
  if (t.tokens_per_minute > 0) {
    q.remaining_tokens = std::max<int64_t>(0, static_cast<int64_t>(std::floor(s.tokens)));
    q.reset_tokens_s = (t.tokens_per_minute - s.tokens) * 60.0 / t.tokens_per_minute;
  }
  return q;
}

Admission QuotaManager::Acquire(const Tenant& t, const Cost& cost) {
  std::lock_guard<std::mutex> lock(mu_);
  State& s = Refill(t, clock_());
  Admission a;
  const double tokens = static_cast<double>(std::max<int64_t>(0, cost.tokens));
  if (t.max_concurrent > 0 && s.in_flight >= t.max_concurrent) {
    a.refusal = Refusal::kConcurrency;
    a.retry_after_s = 1.0;  // a slot frees when a request ends; no schedule to predict
  } else if (t.max_concurrent_sequences > 0 &&
             s.sequences + cost.sequences > t.max_concurrent_sequences) {
    a.refusal = Refusal::kSequences;
    a.never = cost.sequences > t.max_concurrent_sequences;
    a.retry_after_s = 1.0;
  } else if (t.requests_per_minute > 0 && s.requests < 1.0) {
    a.refusal = Refusal::kRequests;
    a.retry_after_s = (1.0 - s.requests) * 60.0 / t.requests_per_minute;
  } else if (t.tokens_per_minute > 0 && (s.tokens < tokens || s.tokens <= 0.0)) {
    a.refusal = Refusal::kTokens;
    a.never = tokens > static_cast<double>(t.tokens_per_minute);
    a.retry_after_s = (std::max(tokens, 1.0) - s.tokens) * 60.0 / t.tokens_per_minute;
  } else {
    if (t.requests_per_minute > 0) s.requests -= 1.0;
    if (t.tokens_per_minute > 0) s.tokens -= tokens;
    ++s.in_flight;
    s.sequences += cost.sequences;
  }
  a.snapshot = SnapshotLocked(t, s);
  return a;
}

void QuotaManager::Charge(const Tenant& t, int64_t tokens) {
  if (tokens <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  State& s = Refill(t, clock_());
  if (t.tokens_per_minute > 0) s.tokens -= static_cast<double>(tokens);
}

void QuotaManager::Release(const Tenant& t, const Cost& cost, int64_t refund) {
  std::lock_guard<std::mutex> lock(mu_);
  State& s = Refill(t, clock_());
  s.in_flight = std::max<int64_t>(0, s.in_flight - 1);
  s.sequences = std::max<int64_t>(0, s.sequences - cost.sequences);
  if (t.tokens_per_minute > 0) {
    s.tokens = std::min<double>(t.tokens_per_minute, s.tokens + static_cast<double>(refund));
  }
}

QuotaSnapshot QuotaManager::Snapshot(const Tenant& t) {
  std::lock_guard<std::mutex> lock(mu_);
  return SnapshotLocked(t, Refill(t, clock_()));
}

int64_t QuotaManager::InFlight(const std::string& tenant) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = states_.find(tenant);
  return it == states_.end() ? 0 : it->second.in_flight;
}

int64_t QuotaManager::SequencesInFlight(const std::string& tenant) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = states_.find(tenant);
  return it == states_.end() ? 0 : it->second.sequences;
}

std::string FormatDuration(double seconds) {
  seconds = std::max(0.0, seconds);
  if (seconds < 1.0) return absl::StrCat(static_cast<int64_t>(std::ceil(seconds * 1000)), "ms");
  const int64_t whole = static_cast<int64_t>(std::ceil(seconds));
  if (whole < 60) return absl::StrCat(whole, "s");
  return absl::StrCat(whole / 60, "m", whole % 60, "s");
}

}  // namespace sluice::gateway
