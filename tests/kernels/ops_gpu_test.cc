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
#include "sluice/kernels/cuda/gather.h"
#include "sluice/kernels/cuda/gemm.h"
#include "sluice/kernels/cuda/norm.h"
#include "sluice/kernels/cuda/qkv.h"
#include "sluice/kernels/cuda/random.h"
#include "sluice/kernels/cuda/rope.h"
#include "sluice/kernels/embedding.h"
#include "sluice/kernels/gather.h"
#include "sluice/kernels/gemm.h"
#include "sluice/kernels/norm.h"
#include "sluice/kernels/qkv.h"
#include "sluice/kernels/random.h"
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
  {
    // Tuning picks among cuBLASLt's candidates; the results below must still hold.
    DeviceBuffer<bf16> ta(std::vector<bf16>(size_t(max_m) * k, FloatToBf16(0.f))),
        tout(size_t(max_m) * n);
    GPU_CHECK_OK(runner->Tune(tout.get(), ta.get(), {dw.get()}, bias ? db.get() : nullptr, ws.get(),
                              nullptr));
  }
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
  // The fp32-output runner (logits): closer to the reference than bf16 allows.
  if (bias) return;
  std::unique_ptr<cuda::GemmRunner> f32;
  GPU_CHECK_OK(cuda::GemmRunner::Create(n, k, false, max_m, &f32, cuda::GemmOut::kFloat));
  if (!f32) return;
  const int m = ms.back();
  std::vector<bf16> a;
  std::vector<float> af;
  RandomBf16(size_t(m) * k, -1.f, 1.f, &a, &af);
  std::vector<float> want(size_t(m) * n);
  GPU_CHECK_OK(cpu::Gemm(want.data(), af.data(), wf.data(), nullptr, m, n, k));
  DeviceBuffer<bf16> da(a);
  DeviceBuffer<float> dout(want.size());
  dout.Poison();
  GPU_CHECK_OK(f32->RunFloat(dout.get(), da.get(), dw.get(), nullptr, m, ws.get(), nullptr));
  AllClose(dout.Download(), want, 1e-3f, 1e-4f, "gemm fp32 out m" + std::to_string(m));
  GPU_CHECK(!f32->Run(nullptr, da.get(), dw.get(), nullptr, m, ws.get(), nullptr).ok(),
            "a float runner refuses bf16 output");
}

void GatherCase(int rows, int in_rows, int width) {
  std::vector<bf16> in;
  std::vector<float> inf;
  RandomBf16(size_t(in_rows) * width, -2.f, 2.f, &in, &inf);
  std::vector<int32_t> idx(rows);
  for (int32_t& r : idx) r = static_cast<int32_t>(Rng()() % in_rows);
  std::vector<float> want(size_t(rows) * width);
  GPU_CHECK_OK(cpu::GatherRows(want.data(), inf.data(), idx.data(), rows, in_rows, width));
  DeviceBuffer<bf16> din(in), dout(want.size());
  DeviceBuffer<int32_t> didx(idx);
  dout.Poison();
  GPU_CHECK_OK(cuda::GatherRows(dout.get(), din.get(), didx.get(), rows, width, nullptr));
  AllClose(ToFloat(dout.Download()), want, 0.f, 0.f, "gather_rows");
}

// How a SplitQkvCase rotates and normalizes: Llama-3's plain table, Qwen3's QK-norm, or
// gpt-oss's YaRN table (factor 32 over 4096 positions, truncated, mscale 1 + 0.1 ln 32).
enum class QkvFlavor { kPlain, kQkNorm, kYarn };

void SplitQkvCase(int tokens, int hq, int hkv, int d, int rot,
                  QkvFlavor flavor = QkvFlavor::kPlain) {
  const std::string tag = std::to_string(tokens) + " tokens d" + std::to_string(d) + " rot" +
                          std::to_string(rot) + " flavor " +
                          std::to_string(static_cast<int>(flavor));
  const QkvLayout l{hq, hkv, d, rot};
  const KvCacheShape shape{tokens / 4 + 2, 16, hkv, d};
  RopeConfig cfg;
  cfg.theta = flavor == QkvFlavor::kYarn ? 150000.0f : 500000.0f;
  cfg.rotary_dim = rot;
  if (flavor == QkvFlavor::kYarn) cfg.yarn_factor = 32.0f;
  const std::vector<float> cos_sin = RopeCosSinCache(cfg, 4096);
  // Norm weights around 1 (bf16 values on both sides).
  std::vector<bf16> qw, kw;
  std::vector<float> qwf, kwf;
  RandomBf16(size_t(d), 0.5f, 1.5f, &qw, &qwf);
  RandomBf16(size_t(d), 0.5f, 1.5f, &kw, &kwf);
  QkNorm<float> norm;
  if (flavor == QkvFlavor::kQkNorm) norm = {qwf.data(), kwf.data(), 1e-6f};
  std::vector<bf16> qkv;
  std::vector<float> qkvf;
  RandomBf16(size_t(tokens) * l.Width(), -2.f, 2.f, &qkv, &qkvf);
  std::vector<int32_t> pos(tokens);
  std::vector<int64_t> slots(tokens);
  const int64_t num_slots = int64_t{shape.num_blocks} * shape.block_size;
  for (int t = 0; t < tokens; ++t) {
    pos[t] = static_cast<int32_t>(Rng()() % 4096);
    slots[t] = t % 5 == 3 ? -1 : (t * 7) % num_slots;  // distinct for tokens < num_slots
  }
  const size_t cache = size_t(num_slots) * hkv * d;
  std::vector<float> q(size_t(tokens) * hq * d), kc(cache, 0.f), vc(cache, 0.f);
  GPU_CHECK_OK(cpu::SplitQkvRopeWriteKv(q.data(), kc.data(), vc.data(), qkvf.data(), pos.data(),
                                        slots.data(), cos_sin.data(), tokens, l, shape, norm));
  DeviceBuffer<bf16> dqkv(qkv), dq(q.size()), dk(std::vector<bf16>(cache, FloatToBf16(0.f))),
      dv(std::vector<bf16>(cache, FloatToBf16(0.f)));
  DeviceBuffer<int32_t> dpos(pos);
  DeviceBuffer<int64_t> dslots(slots);
  DeviceBuffer<float> dcs(cos_sin);
  DeviceBuffer<bf16> dqw(qw), dkw(kw);
  QkNorm<bf16> dnorm;
  if (norm.enabled()) dnorm = {dqw.get(), dkw.get(), norm.eps};
  dq.Poison();
  GPU_CHECK_OK(cuda::SplitQkvRopeWriteKv(dq.get(), dk.get(), dv.get(), dqkv.get(), dpos.get(),
                                         dslots.get(), dcs.get(), tokens, l, shape, nullptr,
                                         dnorm));
  AllClose(ToFloat(dq.Download()), q, 2e-2f, 1e-2f, "split_qkv q " + tag);
  AllClose(ToFloat(dk.Download()), kc, 2e-2f, 1e-2f, "split_qkv k cache " + tag);
  AllClose(ToFloat(dv.Download()), vc, 0.f, 0.f, "split_qkv v cache " + tag);
}

// The GPU fill equals the CPU fill rounded to bf16, bit for bit.
void FillCase(int64_t n, uint64_t first) {
  std::vector<float> want(n);
  GPU_CHECK_OK(cpu::FillUniform(want.data(), n, 1234, 5, first, -0.25f, 0.75f));
  for (float& x : want) x = Bf16ToFloat(FloatToBf16(x));
  DeviceBuffer<bf16> dout(n);
  dout.Poison();
  GPU_CHECK_OK(cuda::FillUniform(dout.get(), n, 1234, 5, first, -0.25f, 0.75f, nullptr));
  AllClose(ToFloat(dout.Download()), want, 0.f, 0.f, "fill_uniform");
  GPU_CHECK_OK(cuda::Fill(dout.get(), n, 1.0f, nullptr));
  AllClose(ToFloat(dout.Download()), std::vector<float>(n, 1.0f), 0.f, 0.f, "fill");
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
  SplitQkvCase(9, 32, 8, 128, 128);
  SplitQkvCase(quick ? 6 : 200, 8, 2, 64, 32);
  SplitQkvCase(9, 32, 4, 128, 128, QkvFlavor::kQkNorm);               // Qwen3-30B-A3B's heads
  SplitQkvCase(quick ? 5 : 100, 16, 8, 128, 64, QkvFlavor::kQkNorm);  // partial rotary
  SplitQkvCase(quick ? 7 : 300, 64, 8, 64, 64, QkvFlavor::kYarn);     // gpt-oss's heads
  GatherCase(5, 40, 4096);
  GatherCase(quick ? 3 : 64, 2048, 128);
  FillCase(quick ? 1000 : 3000001, 0);
  FillCase(4097, 1ull << 33);
  return Finish("ops_gpu_test");
}
