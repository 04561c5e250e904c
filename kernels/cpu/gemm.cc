#include "sluice/kernels/gemm.h"

#include <cstdint>

#if defined(SLUICE_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace sluice::kernels::cpu {

Status Gemm(float* out, const float* a, const float* w, const float* bias, int m, int n, int k) {
  if (m < 0 || n <= 0 || k <= 0) return Status::InvalidArgument("gemm: bad shape");
  if (m == 0) return Status::Ok();
#if defined(SLUICE_HAVE_OPENBLAS)
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, w, k, 0.0f, out, n);
#else
  // NOTE: the kernels-only build on a GPU machine has no OpenBLAS; a plain loop serves
  // there as the reference for the cuBLAS wrapper's tests.
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int p = 0; p < k; ++p) acc += double{a[int64_t{i} * k + p]} * w[int64_t{j} * k + p];
      out[int64_t{i} * n + j] = static_cast<float>(acc);
    }
  }
#endif
  if (bias != nullptr) {
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) out[int64_t{i} * n + j] += bias[j];
    }
  }
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
