// bf16 GEMM through cuBLASLt, out[m, n] = a[m, k] · w[n, k]ᵀ (+ bias[n]), fp32
// accumulation, as cpu::Gemm. One runner per weight shape: Create picks an algorithm
// for each M bucket (powers of two up to max_m) once; Run reuses it.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/status.h"
#include "sluice/kernels/stream.h"

namespace sluice::kernels::cuda {

inline constexpr size_t kGemmWorkspaceBytes = size_t{32} << 20;

// What a runner writes: bf16 activations, or fp32 (the logits, which sampling and
// logprobs read at full precision).
enum class GemmOut { kBf16, kFloat };

class GemmRunner {
 public:
  // REQUIRES: n, k multiples of 8; max_m >= 1.
  static Status Create(int n, int k, bool has_bias, int max_m, std::unique_ptr<GemmRunner>* runner,
                       GemmOut out_type = GemmOut::kBf16);
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // REQUIRES: 0 <= m <= max_m; bias given iff has_bias; workspace not used by another
  // stream concurrently. Thread safety: a runner with a bias is used by one thread at a
  // time (Run sets the bias pointer on the shared descriptor).
  Status Run(bf16* out,         // [m, n]
             const bf16* a,     // [m, k]
             const bf16* w,     // [n, k]
             const bf16* bias,  // [n] or nullptr
             int m,
             void* workspace,  // [kGemmWorkspaceBytes]
             cudaStream_t stream) const;

  // Run for a runner created with GemmOut::kFloat.
  Status RunFloat(float* out,        // [m, n]
                  const bf16* a,     // [m, k]
                  const bf16* w,     // [n, k]
                  const bf16* bias,  // [n] or nullptr
                  int m,
                  void* workspace,  // [kGemmWorkspaceBytes]
                  cudaStream_t stream) const;

  // Times up to `max_candidates` of cuBLASLt's algorithms for each power-of-two m up to
  // max_m and keeps the fastest for each (the heuristic's first pick is not always the
  // fastest at decode sizes). The timed calls cycle through `weights` (each [n, k]; give
  // several, e.g. one per layer, so that they come from memory, not L2). Synchronises
  // `stream`; not during capture.
  // REQUIRES: out [max_m, n] (bf16, or fp32 for kFloat), a [max_m, k].
  Status Tune(void* out, const bf16* a, const std::vector<const bf16*>& weights, const bf16* bias,
              void* workspace, cudaStream_t stream, int max_candidates = 8);

 private:
  Status RunAny(void* out, const bf16* a, const bf16* w, const bf16* bias, int m, void* workspace,
                cudaStream_t stream) const;
  struct Impl;
  explicit GemmRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::kernels::cuda
