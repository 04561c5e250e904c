#include "bench/serving/arrivals.h"

#include <cmath>
#include <random>

namespace sluice::bench {

bool ParseArrivalKind(const std::string& name, ArrivalKind* kind) {
  if (name == "poisson") {
    *kind = ArrivalKind::kPoisson;
  } else if (name == "gamma") {
    *kind = ArrivalKind::kGamma;
  } else if (name == "constant") {
    *kind = ArrivalKind::kConstant;
  } else {
    return false;
  }
  return true;
}

std::vector<double> ArrivalOffsets(const ArrivalConfig& config, size_t n) {
  std::vector<double> offsets(n, 0.0);
  if (n == 0 || std::isinf(config.rate)) return offsets;
  std::mt19937_64 rng(config.seed);
  // theta = 1 / (rate * shape) keeps the mean gap at 1 / rate for every shape.
  const double shape = config.kind == ArrivalKind::kGamma ? config.burstiness : 1.0;
  std::gamma_distribution<double> gap(shape, 1.0 / (config.rate * shape));
  double t = 0;
  for (size_t i = 1; i < n; ++i) {
    t += config.kind == ArrivalKind::kConstant ? 1.0 / config.rate : gap(rng);
    offsets[i] = t;
  }
  return offsets;
}

}  // namespace sluice::bench
