// A small check harness for the GPU tests, which run on machines without GoogleTest:
// CHECK-style macros that count failures, device buffers, bf16 helpers, random inputs,
// and the skip protocol (exit 77 when no GPU is present).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "sluice/kernels/dtype.h"
#include "sluice/kernels/status.h"

namespace sluice::kernels::testing {

inline int& Failures() {
  static int failures = 0;
  return failures;
}

#define GPU_CHECK(cond, ...)                                                        \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      ++::sluice::kernels::testing::Failures();                                     \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                            \
      std::fprintf(stderr, "\n");                                                   \
    }                                                                               \
  } while (0)

#define GPU_CHECK_OK(expr)                          \
  do {                                              \
    const ::sluice::kernels::Status _s = (expr);    \
    GPU_CHECK(_s.ok(), "%s", _s.message().c_str()); \
  } while (0)

#define CUDA_OK(expr)                                                                             \
  do {                                                                                            \
    const cudaError_t _e = (expr);                                                                \
    if (_e != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(_e)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)

// Exits 77 (ctest SKIP_RETURN_CODE) with the reason when no CUDA device is usable.
inline void SkipWithoutGpu() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("SKIP: no CUDA device (%s)\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "device count 0");
    std::exit(77);
  }
}

// SLUICE_QUICK=1 selects small shapes (used under compute-sanitizer).
inline bool Quick() {
  const char* q = std::getenv("SLUICE_QUICK");
  return q != nullptr && q[0] == '1';
}

inline int Finish(const char* name) {
  CUDA_OK(cudaDeviceSynchronize());
  if (Failures() == 0) {
    std::printf("PASS %s\n", name);
    return 0;
  }
  std::printf("FAIL %s: %d checks failed\n", name, Failures());
  return 1;
}

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) {
    CUDA_OK(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)));
  }
  explicit DeviceBuffer(const std::vector<T>& h) : DeviceBuffer(h.size()) { Upload(h); }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return p_; }
  size_t size() const { return n_; }
  void Upload(const std::vector<T>& h) {
    CUDA_OK(cudaMemcpy(p_, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> Download() const {
    std::vector<T> h(n_);
    CUDA_OK(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  // Fills every byte with 0xff: NaN for bf16 and fp32, -1 for integers.
  void Poison() { CUDA_OK(cudaMemset(p_, 0xff, n_ * sizeof(T))); }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

inline std::mt19937_64& Rng() {
  static std::mt19937_64 rng(std::random_device{}());
  return rng;
}

// Random bf16 values in [lo, hi) and their exact float images.
inline void RandomBf16(size_t n, float lo, float hi, std::vector<bf16>* h, std::vector<float>* f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  h->resize(n);
  f->resize(n);
  for (size_t i = 0; i < n; ++i) {
    (*h)[i] = FloatToBf16(dist(Rng()));
    (*f)[i] = Bf16ToFloat((*h)[i]);
  }
}

inline std::vector<float> ToFloat(const std::vector<bf16>& h) {
  std::vector<float> f(h.size());
  for (size_t i = 0; i < h.size(); ++i) f[i] = Bf16ToFloat(h[i]);
  return f;
}

// Compares element-wise with |got - want| <= atol + rtol * |want|; NaN never passes.
// Reports the first few mismatches and the worst error.
inline bool AllClose(const std::vector<float>& got, const std::vector<float>& want, float atol,
                     float rtol, const std::string& what) {
  if (got.size() != want.size()) {
    GPU_CHECK(false, "%s: size %zu vs %zu", what.c_str(), got.size(), want.size());
    return false;
  }
  size_t bad = 0;
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const bool ok = std::isfinite(got[i]) && err <= atol + rtol * std::fabs(want[i]);
    if (std::isfinite(got[i])) worst = std::max(worst, err);
    if (!ok && bad++ < 3) {
      std::fprintf(stderr, "  %s[%zu]: got %g want %g\n", what.c_str(), i, got[i], want[i]);
    }
  }
  GPU_CHECK(bad == 0, "%s: %zu of %zu elements off (worst |err| %g)", what.c_str(), bad, got.size(),
            worst);
  return bad == 0;
}

}  // namespace sluice::kernels::testing
