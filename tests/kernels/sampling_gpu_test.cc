// Sampling on the GPU, checked statistically against cpu::SamplingProbs: over many
// draws from one logits row, the token frequencies must point the way of the reference
// distribution (cosine > 0.99) and filtered tokens must never be drawn. Greedy rows
// must match cpu::Sample exactly, and draws from distinct random rows must mostly agree
// with cpu::Sample's draw for the same Philox uniform.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "gpu_check.h"
#include "sluice/kernels/cuda/sampling.h"
#include "sluice/kernels/sampling.h"

namespace sluice::kernels::testing {
namespace {

std::vector<float> RandomLogits(size_t n, float stddev) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> l(n);
  for (float& x : l) x = dist(Rng());
  return l;
}

// Draws rows × launches tokens from one logits row.
void StatCase(const std::string& name, int vocab, SamplingRow cfg, int rows, int launches) {
  const std::vector<float> one = RandomLogits(vocab, 2.0f);
  std::vector<float> logits(size_t(rows) * vocab);
  for (int r = 0; r < rows; ++r)
    std::copy(one.begin(), one.end(), logits.begin() + size_t(r) * vocab);
  std::vector<float> want(vocab);
  GPU_CHECK_OK(cpu::SamplingProbs(want.data(), one.data(), cfg, vocab));

  DeviceBuffer<float> dlogits(logits);
  DeviceBuffer<int32_t> dout(rows);
  DeviceBuffer<SamplingRow> drows(rows);
  std::vector<double> freq(vocab, 0.0);
  size_t filtered_draws = 0, bad_ids = 0;
  cfg.seed = Rng()();
  std::vector<SamplingRow> row_cfg(rows, cfg);
  for (int l = 0; l < launches; ++l) {
    for (int r = 0; r < rows; ++r) row_cfg[r].offset = uint64_t(l) * rows + r;
    drows.Upload(row_cfg);
    dout.Poison();
    GPU_CHECK_OK(cuda::Sample(dout.get(), dlogits.get(), drows.get(), rows, vocab, nullptr));
    for (int32_t id : dout.Download()) {
      if (id < 0 || id >= vocab) {
        ++bad_ids;
        continue;
      }
      freq[id] += 1.0;
      if (want[id] <= 0.0f) ++filtered_draws;
    }
  }
  double dot = 0, nf = 0, nw = 0;
  for (int i = 0; i < vocab; ++i) {
    dot += freq[i] * want[i];
    nf += freq[i] * freq[i];
    nw += double(want[i]) * want[i];
  }
  const double cosine = dot / std::sqrt(nf * nw);
  const double min_cos = Quick() ? 0.9 : 0.99;
  GPU_CHECK(bad_ids == 0, "%s: %zu ids outside the vocabulary", name.c_str(), bad_ids);
  GPU_CHECK(filtered_draws == 0, "%s: %zu draws of filtered tokens", name.c_str(), filtered_draws);
  GPU_CHECK(cosine > min_cos, "%s: cosine %f", name.c_str(), cosine);
  std::printf("  %-22s draws %d cosine %.5f\n", name.c_str(), rows * launches, cosine);
}

// Distinct random rows: greedy must equal cpu::Sample; sampled rows must agree with it
// for nearly every row (they differ only where float rounding moves a CDF boundary).
void AgreementCase(const std::string& name, int vocab, SamplingRow cfg, int rows) {
  const std::vector<float> logits = RandomLogits(size_t(rows) * vocab, 3.0f);
  std::vector<SamplingRow> row_cfg(rows, cfg);
  for (int r = 0; r < rows; ++r) {
    row_cfg[r].seed = Rng()();
    row_cfg[r].offset = r;
  }
  std::vector<int32_t> want(rows);
  GPU_CHECK_OK(cpu::Sample(want.data(), logits.data(), row_cfg.data(), rows, vocab));
  DeviceBuffer<float> dlogits(logits);
  DeviceBuffer<SamplingRow> drows(row_cfg);
  DeviceBuffer<int32_t> dout(rows);
  dout.Poison();
  GPU_CHECK_OK(cuda::Sample(dout.get(), dlogits.get(), drows.get(), rows, vocab, nullptr));
  const std::vector<int32_t> got = dout.Download();
  int agree = 0;
  for (int r = 0; r < rows; ++r) agree += got[r] == want[r];
  if (!(cfg.temperature > 0.0f)) {
    GPU_CHECK(agree == rows, "%s: greedy differs on %d of %d rows", name.c_str(), rows - agree,
              rows);
  } else {
    GPU_CHECK(agree >= rows * 0.98, "%s: agrees on %d of %d rows", name.c_str(), agree, rows);
  }
  // Same (seed, offset) draws the same token again.
  DeviceBuffer<int32_t> again(rows);
  GPU_CHECK_OK(cuda::Sample(again.get(), dlogits.get(), drows.get(), rows, vocab, nullptr));
  GPU_CHECK(again.Download() == got, "%s: a repeated draw changed", name.c_str());
  std::printf("  %-22s agree %d/%d\n", name.c_str(), agree, rows);
}

// The token bitmask on the GPU equals the CPU reference, and a masked row samples only
// allowed tokens, greedy and not.
void BitmaskCase(int vocab, int rows) {
  std::vector<float> logits = RandomLogits(size_t(rows) * vocab, 2.0f);
  const int words = TokenBitmaskWords(vocab);
  std::vector<uint32_t> bitmask(size_t(rows) * words);
  std::vector<SamplingRow> cfg(rows);
  int masked = 0;
  for (int r = 0; r < rows; ++r) {
    cfg[r].temperature = r % 2 ? 0.8f : 0.0f;
    cfg[r].seed = Rng()();
    if (r % 3 == 2) continue;  // unconstrained rows in between
    cfg[r].mask_row = masked;
    for (int w = 0; w < words; ++w) bitmask[size_t(masked) * words + w] = Rng()() & Rng()();
    bitmask[size_t(masked) * words] |= 1u;  // never empty
    ++masked;
  }
  std::vector<float> want = logits;
  GPU_CHECK_OK(cpu::ApplyTokenBitmask(want.data(), bitmask.data(), cfg.data(), rows, vocab));
  DeviceBuffer<float> dlogits(logits);
  DeviceBuffer<uint32_t> dmask(bitmask);
  DeviceBuffer<SamplingRow> drows(rows);
  drows.Upload(cfg);
  GPU_CHECK_OK(
      cuda::ApplyTokenBitmask(dlogits.get(), dmask.get(), drows.get(), rows, vocab, nullptr));
  const std::vector<float> got = dlogits.Download();
  size_t diff = 0;
  for (size_t i = 0; i < got.size(); ++i) diff += !(got[i] == want[i]);
  GPU_CHECK(diff == 0, "bitmask vocab %d: %zu logits differ from the CPU reference", vocab, diff);
  DeviceBuffer<int32_t> dout(rows);
  GPU_CHECK_OK(cuda::Sample(dout.get(), dlogits.get(), drows.get(), rows, vocab, nullptr));
  const std::vector<int32_t> ids = dout.Download();
  int refused = 0;
  for (int r = 0; r < rows; ++r) {
    if (cfg[r].mask_row < 0) continue;
    const uint32_t* m = bitmask.data() + size_t(cfg[r].mask_row) * words;
    const int32_t id = ids[r];
    refused += id < 0 || id >= vocab || !((m[id >> 5] >> (id & 31)) & 1u);
  }
  GPU_CHECK(refused == 0, "bitmask vocab %d: %d rows sampled a masked token", vocab, refused);
  std::printf("  %-22s vocab %d, %d rows\n", "token_bitmask", vocab, rows);
}

SamplingRow Cfg(float t, int k, float p, float min_p) {
  SamplingRow r;
  r.temperature = t;
  r.top_k = k;
  r.top_p = p;
  r.min_p = min_p;
  return r;
}

}  // namespace
}  // namespace sluice::kernels::testing

int main() {
  using namespace sluice::kernels::testing;
  SkipWithoutGpu();
  const bool quick = Quick();
  const int rows = quick ? 1024 : 4096;
  const int launches = quick ? 4 : 256;  // 1M draws per case in full mode
  StatCase("plain", 512, Cfg(1.0f, 0, 1.0f, 0.0f), rows, launches);
  StatCase("top_k_20", 512, Cfg(0.7f, 20, 1.0f, 0.0f), rows, launches);
  StatCase("top_p_0.8", 1000, Cfg(1.0f, 0, 0.8f, 0.0f), rows, launches);
  StatCase("min_p_0.05", 777, Cfg(1.3f, 0, 1.0f, 0.05f), rows, launches);
  StatCase("k50_p0.9_minp0.02", 3000, Cfg(0.9f, 50, 0.9f, 0.02f), rows, launches);
  StatCase("large_vocab_k40", 128256, Cfg(1.0f, 40, 0.95f, 0.0f), 512, quick ? 2 : 64);
  AgreementCase("greedy", 128256, Cfg(0.0f, 0, 1.0f, 0.0f), 16);
  AgreementCase("greedy_small", 300, Cfg(0.0f, 0, 1.0f, 0.0f), 256);
  AgreementCase("sampled", 1000, Cfg(0.8f, 0, 1.0f, 0.0f), quick ? 256 : 2048);
  AgreementCase("sampled_filters", 5000, Cfg(1.0f, 100, 0.9f, 0.01f), quick ? 256 : 2048);
  BitmaskCase(128256, 64);
  BitmaskCase(4099, 33);
  return Finish("sampling_gpu_test");
}
