// Paged attention on the GPU against cpu::PagedAttention over the shape table in
// attention_cases.h: bf16 inputs, fp32 reference, atol 1.5e-2 / rtol 1e-2 per element
// and a relative L2 error bound; the output is NaN-poisoned before each run.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "attention_cases.h"
#include "gpu_check.h"
#include "sluice/kernels/attention.h"
#include "sluice/kernels/cuda/attention.h"

namespace sluice::kernels::testing {
namespace {

double RelativeL2(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// One case's inputs (bf16 and their exact float images) and fp32 reference output.
struct Prepared {
  AttentionCase c;
  AttentionBatch b;
  std::vector<bf16> q, k, v;
  std::vector<float> sinks;  // [num_q_heads] when the case has sinks
  std::vector<float> want;
};

Prepared Prepare(const AttentionCase& c) {
  Prepared x{c, BuildAttentionBatch(c, 3, Rng())};
  const size_t q_elems = static_cast<size_t>(x.b.num_q_tokens) * c.num_q_heads * c.head_dim;
  const size_t cache_elems =
      static_cast<size_t>(x.b.num_blocks) * c.block_size * c.num_kv_heads * c.head_dim;
  // Queries scaled up so that softmax is far from uniform over long contexts.
  std::vector<float> qf, kf, vf;
  RandomBf16(q_elems, -3.0f, 3.0f, &x.q, &qf);
  RandomBf16(cache_elems, -1.0f, 1.0f, &x.k, &kf);
  RandomBf16(cache_elems, -1.0f, 1.0f, &x.v, &vf);
  if (c.sinks) {
    std::vector<bf16> unused;
    RandomBf16(static_cast<size_t>(c.num_q_heads), -2.0f, 4.0f, &unused, &x.sinks);
    x.b.params.sinks = x.sinks.data();
  }
  x.want.resize(q_elems);
  GPU_CHECK_OK(cpu::PagedAttention(x.b.params, x.want.data(), qf.data(), kf.data(), vf.data()));
  return x;
}

// Runs one prepared case with the given options (-1: defaults); false if unsupported
// here. Runs twice (once under SLUICE_QUICK), so that the split tiles' merge counters
// are checked to reset.
bool RunCase(const Prepared& x, const cuda::PagedAttentionOptions& options) {
  const AttentionCase& c = x.c;
  const AttentionBatch& b = x.b;
  DeviceBuffer<bf16> dq(x.q), dk(x.k), dv(x.v), dout(x.q.size());
  DeviceBuffer<int32_t> dtables(b.block_tables), dlens(b.seq_lens);
  DeviceBuffer<int32_t> dcu(b.cu_seqlens_q.empty() ? std::vector<int32_t>{0} : b.cu_seqlens_q);
  DeviceBuffer<float> dsinks(x.sinks.empty() ? std::vector<float>{0.0f} : x.sinks);
  PagedAttentionParams dp = b.params;
  dp.sinks = x.sinks.empty() ? nullptr : dsinks.get();
  dp.block_tables = dtables.get();
  dp.seq_lens = dlens.get();
  dp.cu_seqlens_q = b.cu_seqlens_q.empty() ? nullptr : dcu.get();

  cuda::PagedAttentionPlan plan;
  const Status planned =
      cuda::PlanPagedAttention(dp, b.seq_lens.data(), b.params.cu_seqlens_q, &plan, options);
  if (planned.code() == StatusCode::kUnsupported) return false;
  GPU_CHECK_OK(planned);
  DeviceBuffer<char> ws(plan.workspace_bytes);
  GPU_CHECK_OK(cuda::UploadPagedAttentionPlan(plan, ws.get(), ws.size(), nullptr));
  const std::string what = c.name + " d" + std::to_string(plan.decode_variant) + " v" +
                           std::to_string(plan.prefill_variant) + " s" +
                           std::to_string(plan.prefill_schedule) +
                           std::to_string(plan.decode_schedule);
  for (int pass = 0; pass < (Quick() ? 1 : 2); ++pass) {
    dout.Poison();
    GPU_CHECK_OK(cuda::PagedAttention(plan, dp, dout.get(), dq.get(), dk.get(), dv.get(), ws.get(),
                                      nullptr));
    CUDA_OK(cudaDeviceSynchronize());
    const std::vector<float> got = ToFloat(dout.Download());
    AllClose(got, x.want, 1.5e-2f, 1e-2f, what);
    const double rel = RelativeL2(got, x.want);
    GPU_CHECK(rel < 1e-2, "%s: relative L2 error %g", what.c_str(), rel);
    if (pass == 0) {
      std::printf("  %-34s items %zu+%zu merges %zu  rel_l2 %.2e\n", what.c_str(),
                  plan.decode_items.size(), plan.prefill_items.size(), plan.merge_items.size(),
                  rel);
    }
  }
  return true;
}

// Whether the case has decode tiles (up to 16 rows of one sequence).
bool HasDecodeTiles(const AttentionCase& c) {
  bool has = c.q_lens.empty();
  for (int q : c.q_lens) has |= q * (c.num_q_heads / c.num_kv_heads) <= 16;
  return has;
}

}  // namespace
}  // namespace sluice::kernels::testing

int main() {
  using namespace sluice::kernels::testing;
  namespace cuda = sluice::kernels::cuda;
  SkipWithoutGpu();
  std::vector<Prepared> prepared;
  for (const AttentionCase& c : AttentionTestCases(Quick())) prepared.push_back(Prepare(c));
  for (const Prepared& x : prepared) RunCase(x, {});
  // Every prefill variant over the cases that have prefill tiles at head_dim 128 (the
  // Hopper-only variants last, and skipped where unsupported); the serpentine schedule
  // with the mma.sync and pipelined wgmma ones. (The quick shapes have fewer items than
  // CTAs, so the schedule changes nothing there and only the full run tries it.)
  const int schedules = Quick() ? 1 : 2;
  for (int schedule = 0; schedule < schedules; ++schedule) {
    for (int variant = 0; variant < cuda::kNumPrefillVariants; ++variant) {
      if (schedule == 1 && variant != 2 && variant != 5 && variant != 8 && variant != 9) continue;
      cuda::PagedAttentionOptions options;
      options.prefill_variant = variant;
      options.schedule = schedule;
      for (const Prepared& x : prepared) {
        if (x.c.head_dim == 128 && !x.c.q_lens.empty() && !RunCase(x, options)) break;
      }
    }
  }
  // Every decode variant over the cases with decode tiles, with both schedules (5 and 6
  // take the inline-item launch where a case has at most 128 decode items and the
  // workspace one elsewhere).
  for (int variant = 0; variant < cuda::kNumDecodeVariants; ++variant) {
    for (int schedule = 0; schedule < schedules; ++schedule) {
      cuda::PagedAttentionOptions options;
      options.decode_variant = variant;
      options.schedule = schedule;
      for (const Prepared& x : prepared) {
        if (HasDecodeTiles(x.c)) RunCase(x, options);
      }
    }
  }
  return Finish("attention_gpu_test");
}
