// cuBLASLt bf16 GEMM: row-major out[m, n] = a[m, k] · w[n, k]ᵀ is, in cuBLAS's
// column-major terms, outᵀ[n, m] = op(w)[n, k] · aᵀ[k, m] with op = transpose.
#include "sluice/kernels/cuda/gemm.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

namespace sluice::kernels::cuda {
namespace {

Status LtStatus(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Status::CudaError(std::string("gemm: ") + what + ": cublasLt status " +
                           std::to_string(static_cast<int>(st)));
}

Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return Status::CudaError(std::string(what) + ": " + cudaGetErrorString(err));
}

}  // namespace

struct GemmRunner::Impl {
  int n = 0, k = 0, max_m = 0;
  bool has_bias = false;
  bool float_out = false;  // out is fp32 (logits), else bf16
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  // Bucket b serves m in (2^(b-1), 2^b]; its algorithm was picked for m = 2^b.
  std::vector<cublasLtMatmulAlgo_t> algos;
  std::vector<bool> has_algo;

  ~Impl() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (handle) cublasLtDestroy(handle);
  }

  // Layouts for one m: w as k×n (ld k, transposed by op), a as k×m, out as n×m.
  struct Layouts {
    cublasLtMatrixLayout_t w = nullptr, a = nullptr, c = nullptr;
    ~Layouts() {
      if (w) cublasLtMatrixLayoutDestroy(w);
      if (a) cublasLtMatrixLayoutDestroy(a);
      if (c) cublasLtMatrixLayoutDestroy(c);
    }
  };

  Status MakeLayouts(int m, Layouts* l) const {
    cublasStatus_t st = cublasLtMatrixLayoutCreate(&l->w, CUDA_R_16BF, k, n, k);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&l->a, CUDA_R_16BF, k, m, k);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatrixLayoutCreate(&l->c, float_out ? CUDA_R_32F : CUDA_R_16BF, n, m, n);
    return LtStatus(st, "matrix layout");
  }

  static int Bucket(int m) {
    int b = 0;
    while ((1 << b) < m) ++b;
    return b;
  }

  // Up to `max` of the heuristic's algorithms for m, best guess first.
  Status Candidates(int m, int max, std::vector<cublasLtMatmulHeuristicResult_t>* out) const {
    Layouts l;
    if (Status s = MakeLayouts(m, &l); !s.ok()) return s;
    out->resize(max);
    int count = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, desc, l.w, l.a, l.c, l.c, pref,
                                                             max, out->data(), &count);
    out->resize(st == CUBLAS_STATUS_SUCCESS ? count : 0);
    return Status::Ok();
  }

  Status PickAlgo(int m, cublasLtMatmulAlgo_t* algo, bool* found) const {
    Layouts l;
    if (Status s = MakeLayouts(m, &l); !s.ok()) return s;
    cublasLtMatmulHeuristicResult_t result;
    int count = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(handle, desc, l.w, l.a, l.c, l.c, pref, 1, &result, &count);
    *found = st == CUBLAS_STATUS_SUCCESS && count > 0;
    if (*found) *algo = result.algo;
    return Status::Ok();
  }
};

GemmRunner::GemmRunner(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GemmRunner::~GemmRunner() = default;

Status GemmRunner::Create(int n, int k, bool has_bias, int max_m,
                          std::unique_ptr<GemmRunner>* runner, GemmOut out_type) {
  if (n <= 0 || k <= 0 || n % 8 != 0 || k % 8 != 0 || max_m < 1) {
    return Status::InvalidArgument("gemm: n (" + std::to_string(n) + ") and k (" +
                                   std::to_string(k) +
                                   ") must be positive multiples of 8, "
                                   "max_m >= 1");
  }
  if (has_bias && out_type == GemmOut::kFloat) {
    return Status::Unsupported("gemm: a bias with fp32 output is not supported");
  }
  auto impl = std::make_unique<Impl>();
  impl->n = n;
  impl->k = k;
  impl->max_m = max_m;
  impl->has_bias = has_bias;
  impl->float_out = out_type == GemmOut::kFloat;
  cublasStatus_t st = cublasLtCreate(&impl->handle);
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulDescCreate(&impl->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  }
  const cublasOperation_t trans = CUBLAS_OP_T, no_trans = CUBLAS_OP_N;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulDescSetAttribute(impl->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans,
                                        sizeof(trans));
  }
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulDescSetAttribute(impl->desc, CUBLASLT_MATMUL_DESC_TRANSB, &no_trans,
                                        sizeof(no_trans));
  }
  if (st == CUBLAS_STATUS_SUCCESS && has_bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_16BF;
    st = cublasLtMatmulDescSetAttribute(impl->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                        sizeof(epi));
    if (st == CUBLAS_STATUS_SUCCESS) {
      st = cublasLtMatmulDescSetAttribute(impl->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                          &bias_type, sizeof(bias_type));
    }
  }
  if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceCreate(&impl->pref);
  if (st == CUBLAS_STATUS_SUCCESS) {
    const size_t ws = kGemmWorkspaceBytes;
    st = cublasLtMatmulPreferenceSetAttribute(impl->pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                              &ws, sizeof(ws));
  }
  if (Status s = LtStatus(st, "setup"); !s.ok()) return s;

  const int buckets = Impl::Bucket(max_m) + 1;
  impl->algos.resize(buckets);
  impl->has_algo.assign(buckets, false);
  for (int b = 0; b < buckets; ++b) {
    bool found = false;
    if (Status s = impl->PickAlgo(1 << b, &impl->algos[b], &found); !s.ok()) return s;
    impl->has_algo[b] = found;
  }
  runner->reset(new GemmRunner(std::move(impl)));
  return Status::Ok();
}

Status GemmRunner::Run(bf16* out, const bf16* a, const bf16* w, const bf16* bias, int m,
                       void* workspace, cudaStream_t stream) const {
  if (impl_->float_out) return Status::InvalidArgument("gemm: this runner writes fp32 (RunFloat)");
  return RunAny(out, a, w, bias, m, workspace, stream);
}

Status GemmRunner::RunFloat(float* out, const bf16* a, const bf16* w, const bf16* bias, int m,
                            void* workspace, cudaStream_t stream) const {
  if (!impl_->float_out) return Status::InvalidArgument("gemm: this runner writes bf16 (Run)");
  return RunAny(out, a, w, bias, m, workspace, stream);
}

Status GemmRunner::Tune(void* out, const bf16* a, const std::vector<const bf16*>& weights,
                        const bf16* bias, void* workspace, cudaStream_t stream,
                        int max_candidates) {
  if (weights.empty()) return Status::InvalidArgument("gemm: tune needs a weight matrix");
  Impl& im = *impl_;
  if ((bias != nullptr) != im.has_bias) {
    return Status::InvalidArgument("gemm: bias given iff the runner was created with one");
  }
  if (im.has_bias) {
    const cublasStatus_t st = cublasLtMatmulDescSetAttribute(
        im.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
    if (Status s = LtStatus(st, "bias pointer"); !s.ok()) return s;
  }
  cudaEvent_t begin = nullptr, end = nullptr;
  if (cudaEventCreate(&begin) != cudaSuccess || cudaEventCreate(&end) != cudaSuccess) {
    return Status::CudaError("gemm: tune: event creation failed");
  }
  const float alpha = 1.0f, beta = 0.0f;
  Status result = Status::Ok();
  for (size_t b = 0; b < im.algos.size() && result.ok(); ++b) {
    // Timed at the bucket's own m, capped by the buffers' max_m.
    const int m = std::min(1 << b, im.max_m);
    std::vector<cublasLtMatmulHeuristicResult_t> candidates;
    if (Status s = im.Candidates(1 << b, max_candidates, &candidates); !s.ok()) {
      result = s;
      break;
    }
    Impl::Layouts l;
    if (Status s = im.MakeLayouts(m, &l); !s.ok()) {
      result = s;
      break;
    }
    float best = 0.0f;
    for (const auto& c : candidates) {
      // Each repetition reads another weight matrix, as a forward pass does, so that a
      // matrix left in L2 by the last call does not flatter an algorithm.
      auto run = [&](int r) {
        const bf16* w = weights[r % weights.size()];
        return cublasLtMatmul(im.handle, im.desc, &alpha, w, l.w, a, l.a, &beta, out, l.c, out, l.c,
                              &c.algo, workspace, kGemmWorkspaceBytes, stream);
      };
      if (run(0) != CUBLAS_STATUS_SUCCESS) continue;  // not for this m: skip it
      const int reps = static_cast<int>(std::max<size_t>(weights.size(), 4));
      cudaEventRecord(begin, stream);
      bool ok = true;
      for (int r = 1; r <= reps && ok; ++r) ok = run(r) == CUBLAS_STATUS_SUCCESS;
      cudaEventRecord(end, stream);
      if (!ok || cudaEventSynchronize(end) != cudaSuccess) continue;
      float ms = 0.0f;
      cudaEventElapsedTime(&ms, begin, end);
      if (best == 0.0f || ms < best) {
        best = ms;
        im.algos[b] = c.algo;
        im.has_algo[b] = true;
      }
    }
  }
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  if (result.ok()) result = CudaStatus(cudaGetLastError(), "gemm: tune");
  return result;
}

Status GemmRunner::RunAny(void* out, const bf16* a, const bf16* w, const bf16* bias, int m,
                          void* workspace, cudaStream_t stream) const {
  const Impl& im = *impl_;
  if (m < 0 || m > im.max_m) {
    return Status::InvalidArgument("gemm: m " + std::to_string(m) + " outside [0, max_m " +
                                   std::to_string(im.max_m) + "]");
  }
  if ((bias != nullptr) != im.has_bias) {
    return Status::InvalidArgument("gemm: bias given iff the runner was created with one");
  }
  if (m == 0) return Status::Ok();
  Impl::Layouts l;
  if (Status s = im.MakeLayouts(m, &l); !s.ok()) return s;
  if (im.has_bias) {
    const cublasStatus_t st = cublasLtMatmulDescSetAttribute(
        im.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
    if (Status s = LtStatus(st, "bias pointer"); !s.ok()) return s;
  }
  const float alpha = 1.0f, beta = 0.0f;
  const int b = Impl::Bucket(m);
  cublasStatus_t st = CUBLAS_STATUS_NOT_SUPPORTED;
  if (im.has_algo[b]) {
    st = cublasLtMatmul(im.handle, im.desc, &alpha, w, l.w, a, l.a, &beta, out, l.c, out, l.c,
                        &im.algos[b], workspace, kGemmWorkspaceBytes, stream);
  }
  if (st != CUBLAS_STATUS_SUCCESS) {
    // The bucket's algorithm does not take this m: let cuBLASLt choose for it.
    cublasLtMatmulAlgo_t algo;
    bool found = false;
    if (Status s = im.PickAlgo(m, &algo, &found); !s.ok()) return s;
    if (!found) return Status::Unsupported("gemm: no cuBLASLt algorithm for this shape");
    st = cublasLtMatmul(im.handle, im.desc, &alpha, w, l.w, a, l.a, &beta, out, l.c, out, l.c,
                        &algo, workspace, kGemmWorkspaceBytes, stream);
  }
  return LtStatus(st, "matmul");
}

}  // namespace sluice::kernels::cuda
