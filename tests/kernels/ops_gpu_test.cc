// RMSNorm, fused add + RMSNorm, RoPE (default and llama3), SiLU-and-mul, embedding and
// the cuBLASLt GEMM on the GPU against their CPU references, over a table of shapes.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gpu_check.h"
#include "sluice/kernels/activation.h"
#include "sluice/kernels/cuda/activation.h"
#include "sluice/kernels/cuda/embedding.h"
#include "sluice/kernels/cuda/gemm.h"
#include "sluice/kernels/cuda/norm.h"
#include "sluice/kernels/cuda/rope.h"
#include "sluice/kernels/embedding.h"
#include "sluice/kernels/gemm.h"
#include "sluice/kernels/norm.h"
#include "sluice/kernels/rope.h"

namespace sluice::kernels::testing {
namespace {

void NormCase(int tokens, int hidden) {
  const std::string tag = std::to_string(tokens) + "x" + std::to_string(hidden);
  std::vector<bf16> x, r, w;
  std::vector<float> xf, rf, wf;
  RandomBf16(size_t(tokens) * hidden, -2.f, 2.f, &x, &xf);
  RandomBf16(size_t(tokens) * hidden, -2.f, 2.f, &r, &rf);
  RandomBf16(hidden, 0.5f, 1.5f, &w, &wf);
  DeviceBuffer<bf16> dx(x), dr(r), dw(w), dout(x.size());
  std::vector<float> want(x.size());
  GPU_CHECK_OK(cpu::RmsNorm(want.data(), xf.data(), wf.data(), tokens, hidden, 1e-5f));
  dout.Poison();
  GPU_CHECK_OK(cuda::RmsNorm(dout.get(), dx.get(), dw.get(), tokens, hidden, 1e-5f, nullptr));
  AllClose(ToFloat(dout.Download()), want, 2e-2f, 1e-2f, "rms_norm " + tag);

  GPU_CHECK_OK(cpu::FusedAddRmsNorm(xf.data(), rf.data(), wf.data(), tokens, hidden, 1e-5f));
  GPU_CHECK_OK(cuda::FusedAddRmsNorm(dx.get(), dr.get(), dw.get(), tokens, hidden, 1e-5f, nullptr));
  AllClose(ToFloat(dr.Download()), rf, 1e-2f, 1e-2f, "fused_add residual " + tag);
  AllClose(ToFloat(dx.Download()), xf, 2e-2f, 1e-2f, "fused_add normed " + tag);
}

void RopeCase(int tokens, int hq, int hkv, int head_dim, int rotary_dim, bool llama3) {
  const std::string tag =
      std::to_string(tokens) + " tokens d" + std::to_string(head_dim) + (llama3 ? " llama3" : "");
  RopeConfig cfg;
  cfg.theta = 500000.0f;
  cfg.rotary_dim = rotary_dim;
  if (llama3) cfg.llama3_factor = 8.0f;
  const int max_pos = 8192;
  const std::vector<float> cos_sin = RopeCosSinCache(cfg, max_pos);
  std::vector<int32_t> pos(tokens);
  for (int32_t& p : pos) p = static_cast<int32_t>(Rng()() % max_pos);
  std::vector<bf16> q, k;
  std::vector<float> qf, kf;
  RandomBf16(size_t(tokens) * hq * head_dim, -2.f, 2.f, &q, &qf);
  RandomBf16(size_t(tokens) * hkv * head_dim, -2.f, 2.f, &k, &kf);
  GPU_CHECK_OK(cpu::ApplyRope(qf.data(), kf.data(), pos.data(), cos_sin.data(), tokens, hq, hkv,
                              head_dim, rotary_dim));
  DeviceBuffer<bf16> dq(q), dk(k);
  DeviceBuffer<int32_t> dpos(pos);
  DeviceBuffer<float> dcs(cos_sin);
  GPU_CHECK_OK(cuda::ApplyRope(dq.get(), dk.get(), dpos.get(), dcs.get(), tokens, hq, hkv, head_dim,
                               rotary_dim, nullptr));
  AllClose(ToFloat(dq.Download()), qf, 2e-2f, 1e-2f, "rope q " + tag);
  AllClose(ToFloat(dk.Download()), kf, 2e-2f, 1e-2f, "rope k " + tag);
}

void SiluCase(int tokens, int inter) {
  std::vector<bf16> x;
  std::vector<float> xf;
  RandomBf16(size_t(tokens) * 2 * inter, -4.f, 4.f, &x, &xf);
  std::vector<float> want(size_t(tokens) * inter);
  GPU_CHECK_OK(cpu::SiluAndMul(want.data(), xf.data(), tokens, inter));
  DeviceBuffer<bf16> dx(x), dout(want.size());
  dout.Poison();
  GPU_CHECK_OK(cuda::SiluAndMul(dout.get(), dx.get(), tokens, inter, nullptr));
  AllClose(ToFloat(dout.Download()), want, 2e-2f, 1e-2f, "silu_and_mul " + std::to_string(inter));
}

void EmbeddingCase(int tokens, int vocab, int hidden) {
  std::vector<bf16> t;
  std::vector<float> tf;
  RandomBf16(size_t(vocab) * hidden, -1.f, 1.f, &t, &tf);
  std::vector<int32_t> ids(tokens);
  for (int32_t& id : ids) id = static_cast<int32_t>(Rng()() % vocab);
  std::vector<float> want(size_t(tokens) * hidden);
  GPU_CHECK_OK(cpu::Embedding(want.data(), ids.data(), tf.data(), tokens, vocab, hidden));
  DeviceBuffer<bf16> dt(t), dout(want.size());
  DeviceBuffer<int32_t> dids(ids);
  dout.Poison();
  GPU_CHECK_OK(cuda::Embedding(dout.get(), dids.get(), dt.get(), tokens, vocab, hidden, nullptr));
  AllClose(ToFloat(dout.Download()), want, 0.f, 0.f, "embedding");
}

void GemmCase(int n, int k, bool bias, const std::vector<int>& ms) {
  int max_m = 1;
  for (int m : ms) max_m = std::max(max_m, m);
  std::unique_ptr<cuda::GemmRunner> runner;
  GPU_CHECK_OK(cuda::GemmRunner::Create(n, k, bias, max_m, &runner));
  if (!runner) return;
  DeviceBuffer<char> ws(cuda::kGemmWorkspaceBytes);
  std::vector<bf16> w, bvec;
  std::vector<float> wf, bf;
  RandomBf16(size_t(n) * k, -1.f, 1.f, &w, &wf);
  RandomBf16(n, -1.f, 1.f, &bvec, &bf);
  DeviceBuffer<bf16> dw(w), db(bvec);
  for (int m : ms) {
    std::vector<bf16> a;
    std::vector<float> af;
    RandomBf16(size_t(m) * k, -1.f, 1.f, &a, &af);
    std::vector<float> want(size_t(m) * n);
    GPU_CHECK_OK(cpu::Gemm(want.data(), af.data(), wf.data(), bias ? bf.data() : nullptr, m, n, k));
    DeviceBuffer<bf16> da(a), dout(want.size());
    dout.Poison();
    GPU_CHECK_OK(runner->Run(dout.get(), da.get(), dw.get(), bias ? db.get() : nullptr, m, ws.get(),
                             nullptr));
    AllClose(ToFloat(dout.Download()), want, 5e-2f, 1e-2f,
             "gemm m" + std::to_string(m) + " n" + std::to_string(n) + " k" + std::to_string(k));
  }
}

}  // namespace
}  // namespace sluice::kernels::testing

int main() {
  using namespace sluice::kernels::testing;
  SkipWithoutGpu();
  const bool quick = Quick();
  NormCase(1, 4096);
  NormCase(7, 2048);
  NormCase(quick ? 3 : 300, 4096);
  NormCase(5, 16384);
  NormCase(4, 1000);
  RopeCase(9, 32, 8, 128, 128, false);
  RopeCase(quick ? 5 : 257, 32, 8, 128, 128, true);
  RopeCase(13, 8, 2, 64, 32, false);
  SiluCase(3, 14336);
  SiluCase(quick ? 2 : 100, 1024);
  SiluCase(5, 8);
  EmbeddingCase(17, 32000, 4096);
  EmbeddingCase(quick ? 5 : 500, 1000, 64);
  GemmCase(256, 512, false, {1, 7, 64});
  GemmCase(1024, 256, true, quick ? std::vector<int>{3} : std::vector<int>{1, 100, 300});
  return Finish("ops_gpu_test");
}
