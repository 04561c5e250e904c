// Dense matmul against a weight stored as Hugging Face does, [out_features, in_features]:
//   out[m, n] = sum_k a[m, k] * w[n, k]  (+ bias[n] when given).
#pragma once

#include <string>

#include "sluice/kernels/status.h"
#include "sluice/kernels/thread_pool.h"

namespace sluice::kernels::cpu {

// With a pool, the output columns are split over its threads, each running a
// single-threaded sgemm on its slice (which the BLAS may block differently from the whole:
// results agree to float32 rounding across thread counts).
Status Gemm(float* out,         // [m, n]
            const float* a,     // [m, k]
            const float* w,     // [n, k]
            const float* bias,  // [n] or nullptr
            int m, int n, int k, ThreadPool* pool = nullptr);

// The BLAS and the kernels it runs ("OpenBLAS SkylakeX"): OpenBLAS picks them for the
// CPU at start-up unless OPENBLAS_CORETYPE names others (AVX2's Haswell kernels run
// the tiny model's decode at half the speed of the AVX-512 ones on a Zen 4).
std::string BlasName();

// Makes the BLAS library single-threaded: the CPU backend splits GEMMs over its own pool
// (a BLAS's own threads would spin against it). Process-wide; idempotent.
void UseSingleThreadedBlas();

}  // namespace sluice::kernels::cpu
