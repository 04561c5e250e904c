// KV-cache write through slot_mapping (with -1 padding) and block copies on the GPU,
// compared exactly with the CPU reference over whole caches pre-filled at random.
#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "gpu_check.h"
#include "sluice/kernels/cuda/kv_cache.h"
#include "sluice/kernels/kv_cache.h"

namespace sluice::kernels::testing {
namespace {

struct CacheCase {
  int num_tokens;
  KvCacheShape shape;
};

bool SameBits(const std::vector<bf16>& got, const std::vector<float>& want,
              const std::string& what) {
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (FloatToBf16(want[i]).bits != got[i].bits && bad++ < 3) {
      std::fprintf(stderr, "  %s[%zu]: got %g want %g\n", what.c_str(), i, Bf16ToFloat(got[i]),
                   want[i]);
    }
  }
  GPU_CHECK(bad == 0, "%s: %zu elements differ", what.c_str(), bad);
  return bad == 0;
}

void WriteCase(const CacheCase& c) {
  const KvCacheShape& s = c.shape;
  const size_t cache = static_cast<size_t>(s.num_blocks) * s.BlockElems();
  const size_t tok = static_cast<size_t>(c.num_tokens) * s.num_kv_heads * s.head_dim;
  std::vector<bf16> kc, vc, k, v;
  std::vector<float> kcf, vcf, kf, vf;
  RandomBf16(cache, -1.f, 1.f, &kc, &kcf);
  RandomBf16(cache, -1.f, 1.f, &vc, &vcf);
  RandomBf16(tok, -1.f, 1.f, &k, &kf);
  RandomBf16(tok, -1.f, 1.f, &v, &vf);
  std::vector<int64_t> slots(static_cast<size_t>(s.num_blocks) * s.block_size);
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), Rng());
  slots.resize(c.num_tokens);
  for (size_t i = 0; i < slots.size(); i += 5) slots[i] = -1;  // padding tokens

  GPU_CHECK_OK(cpu::WriteKvCache(kcf.data(), vcf.data(), kf.data(), vf.data(), slots.data(),
                                 c.num_tokens, s));
  DeviceBuffer<bf16> dkc(kc), dvc(vc), dk(k), dv(v);
  DeviceBuffer<int64_t> dslots(slots);
  GPU_CHECK_OK(cuda::WriteKvCache(dkc.get(), dvc.get(), dk.get(), dv.get(), dslots.get(),
                                  c.num_tokens, s, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  SameBits(dkc.Download(), kcf, "write_kv_cache K");
  SameBits(dvc.Download(), vcf, "write_kv_cache V");
}

void CopyCase(const CacheCase& c) {
  const KvCacheShape& s = c.shape;
  const size_t cache = static_cast<size_t>(s.num_blocks) * s.BlockElems();
  std::vector<bf16> kc, vc;
  std::vector<float> kcf, vcf;
  RandomBf16(cache, -1.f, 1.f, &kc, &kcf);
  RandomBf16(cache, -1.f, 1.f, &vc, &vcf);
  // Sources and destinations disjoint, destinations distinct.
  std::vector<int32_t> ids(s.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), Rng());
  const int num_pairs = s.num_blocks / 3;
  std::vector<int32_t> pairs;
  for (int i = 0; i < num_pairs; ++i) {
    pairs.push_back(ids[i]);
    pairs.push_back(ids[num_pairs + i]);
  }
  GPU_CHECK_OK(cpu::CopyBlocks(kcf.data(), vcf.data(), pairs.data(), num_pairs, s));
  DeviceBuffer<bf16> dkc(kc), dvc(vc);
  DeviceBuffer<int32_t> dpairs(pairs);
  GPU_CHECK_OK(cuda::CopyBlocks(dkc.get(), dvc.get(), dpairs.get(), num_pairs, s, nullptr));
  CUDA_OK(cudaDeviceSynchronize());
  SameBits(dkc.Download(), kcf, "copy_blocks K");
  SameBits(dvc.Download(), vcf, "copy_blocks V");
}

}  // namespace
}  // namespace sluice::kernels::testing

int main() {
  using namespace sluice::kernels::testing;
  SkipWithoutGpu();
  std::vector<CacheCase> cases = {
      {1, {4, 16, 8, 128}},
      {37, {64, 16, 8, 128}},
      {100, {50, 16, 2, 64}},
      {33, {40, 8, 1, 64}},
  };
  if (!Quick()) cases.push_back({3000, {512, 16, 8, 128}});
  for (const CacheCase& c : cases) {
    WriteCase(c);
    CopyCase(c);
  }
  return Finish("kv_cache_gpu_test");
}
