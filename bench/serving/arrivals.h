// Open-loop arrival times: Poisson, gamma (bursty) or constant rate, as vllm bench
// serve draws them. Pure and seeded, so a schedule is reproducible.
#ifndef SLUICE_BENCH_SERVING_ARRIVALS_H_
#define SLUICE_BENCH_SERVING_ARRIVALS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::bench {

enum class ArrivalKind {
  kPoisson,   // exponential gaps (gamma with shape 1)
  kGamma,     // gamma gaps with shape = burstiness, mean 1 / rate
  kConstant,  // gaps of exactly 1 / rate
};

struct ArrivalConfig {
  ArrivalKind kind = ArrivalKind::kPoisson;
  double rate = 1.0;        // requests per second; +inf sends every request at time 0
  double burstiness = 1.0;  // gamma shape: < 1 burstier than Poisson, > 1 smoother
  uint64_t seed = 0;
};

// Parses "poisson", "gamma" or "constant"; false for anything else.
bool ParseArrivalKind(const std::string& name, ArrivalKind* kind);

// Offsets in seconds from the start of the level of `n` arrivals: the first at 0, each
// next one a gap later. Gaps have mean 1 / rate.
// REQUIRES: rate > 0; burstiness > 0.
std::vector<double> ArrivalOffsets(const ArrivalConfig& config, size_t n);

}  // namespace sluice::bench

#endif  // SLUICE_BENCH_SERVING_ARRIVALS_H_
