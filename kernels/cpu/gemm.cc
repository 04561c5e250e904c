#include "sluice/kernels/gemm.h"

#include <algorithm>
#include <cstdint>
#include <string>

#if defined(SLUICE_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace sluice::kernels::cpu {

namespace {

// Columns [c0, c1) of out = a @ w.T.
void GemmColumns(float* out, const float* a, const float* w, int m, int n, int k, int c0, int c1) {
#if defined(SLUICE_HAVE_OPENBLAS)
  if (m == 1) {  // a matrix-vector product: sgemm would pack the whole weight first
    cblas_sgemv(CblasRowMajor, CblasNoTrans, c1 - c0, k, 1.0f, w + int64_t{c0} * k, k, a, 1, 0.0f,
                out + c0, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, c1 - c0, k, 1.0f, a, k,
              w + int64_t{c0} * k, k, 0.0f, out + c0, n);
#else
  for (int i = 0; i < m; ++i) {
    for (int j = c0; j < c1; ++j) {
      double acc = 0.0;
      for (int p = 0; p < k; ++p) acc += double{a[int64_t{i} * k + p]} * w[int64_t{j} * k + p];
      out[int64_t{i} * n + j] = static_cast<float>(acc);
    }
  }
#endif
}

}  // namespace

void UseSingleThreadedBlas() {
#if defined(SLUICE_HAVE_OPENBLAS)
  openblas_set_num_threads(1);
#endif
}

std::string BlasName() {
#if defined(SLUICE_HAVE_OPENBLAS)
  return std::string("OpenBLAS ") + openblas_get_corename();
#else
  return "no BLAS (reference loops)";
#endif
}

Status Gemm(float* out, const float* a, const float* w, const float* bias, int m, int n, int k,
            ThreadPool* pool) {
  if (m < 0 || n <= 0 || k <= 0) return Status::InvalidArgument("gemm: bad shape");
  if (m == 0) return Status::Ok();
  // Slices of at least 64 columns, and of work enough to be worth a thread (~64k FMAs).
  const int threads = pool == nullptr ? 1 : pool->size();
  const int64_t min_cols = std::max<int64_t>(64, (int64_t{1} << 16) / (int64_t{m} * k));
  const int parts =
      static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(1, n / min_cols)));
  if (parts > 1) {
    // Column slices in multiples of 16 (whole vectors for the BLAS kernel).
    const int step = ((n + parts - 1) / parts + 15) / 16 * 16;  // parts * step >= n
    pool->ParallelFor(parts, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const int c0 = static_cast<int>(i) * step, c1 = std::min(n, c0 + step);
        if (c0 < c1) GemmColumns(out, a, w, m, n, k, c0, c1);
      }
    });
  } else {
    GemmColumns(out, a, w, m, n, k, 0, n);
  }
  if (bias != nullptr) {
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) out[int64_t{i} * n + j] += bias[j];
    }
  }
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
