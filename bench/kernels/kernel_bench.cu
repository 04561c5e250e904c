// Kernel benchmarks: device-to-device copy bandwidth and cuBLASLt GEMM rate (the two
// ceilings, measured in the same run), then paged decode attention (GB/s and fraction of
// copy bandwidth), paged prefill attention (TFLOP/s, causal FLOPs counted as
// 2·2·B·H·L²·D/2) and sampling. Shapes come from tests/kernels/attention_cases.h.
// Each figure is the median of many CUDA-event-timed runs after warm-up; small working
// sets rotate among copies so that L2 does not flatter them.
//
// Output: one "RESULT <name> <value> <unit> [<fraction> of <ceiling>]" line per figure.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "attention_cases.h"
#include "gpu_check.h"
#include "sluice/kernels/cuda/attention.h"
#include "sluice/kernels/cuda/gemm.h"
#include "sluice/kernels/cuda/sampling.h"

namespace sluice::kernels::testing {
namespace {

// Uniform values in [-scale, scale) from a hash of the index (bf16 or fp32 storage).
template <class T>
__global__ void FillKernel(T* p, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ seed ^ static_cast<uint32_t>(i >> 32);
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    h *= 0x297A2D39u;
    h ^= h >> 15;
    const float u = (h >> 8) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
    if constexpr (sizeof(T) == 2) {
      p[i] = FloatToBf16(u * scale);
    } else {
      p[i] = u * scale;
    }
  }
}

template <class T>
void Fill(DeviceBuffer<T>& b, float scale) {
  static uint32_t seed = 12345;
  FillKernel<<<1024, 256>>>(b.get(), b.size(), seed++ * 0x85EBCA6Bu, scale);
  CUDA_OK(cudaGetLastError());
}

// Median milliseconds of fn(i) over iters runs after warm-up, each bracketed by events.
double MedianMs(const std::function<void(int)>& fn, int warm, int iters) {
  for (int i = 0; i < warm; ++i) fn(i);
  std::vector<cudaEvent_t> ev(2 * iters);
  for (cudaEvent_t& e : ev) CUDA_OK(cudaEventCreate(&e));
  for (int i = 0; i < iters; ++i) {
    CUDA_OK(cudaEventRecord(ev[2 * i]));
    fn(warm + i);
    CUDA_OK(cudaEventRecord(ev[2 * i + 1]));
  }
  CUDA_OK(cudaDeviceSynchronize());
  std::vector<double> ms(iters);
  for (int i = 0; i < iters; ++i) {
    float t = 0;
    CUDA_OK(cudaEventElapsedTime(&t, ev[2 * i], ev[2 * i + 1]));
    ms[i] = t;
  }
  for (cudaEvent_t& e : ev) cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  return ms[iters / 2];
}

void Check(const Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "bench: %s\n", s.message().c_str());
    std::exit(1);
  }
}

double CopyBandwidth() {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer<char> a(bytes), b(bytes);
  CUDA_OK(cudaMemset(a.get(), 1, bytes));
  const double ms = MedianMs(
      [&](int) { CUDA_OK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice)); }, 3,
      20);
  const double gbps = 2.0 * bytes / (ms * 1e-3) / 1e9;
  std::printf("RESULT copy_bw %.1f GB/s\n", gbps);
  return gbps;
}

double GemmRate(DeviceBuffer<char>& ws) {
  const int n = 8192, k = 8192, m = 8192;
  std::unique_ptr<cuda::GemmRunner> g;
  Check(cuda::GemmRunner::Create(n, k, false, m, &g));
  DeviceBuffer<bf16> a(size_t(m) * k), w(size_t(n) * k), out(size_t(m) * n);
  Fill(a, 1.0f);
  Fill(w, 1.0f);
  const double ms = MedianMs(
      [&](int) { Check(g->Run(out.get(), a.get(), w.get(), nullptr, m, ws.get(), nullptr)); }, 3,
      20);
  const double tflops = 2.0 * m * n * k / (ms * 1e-3) / 1e12;
  std::printf("RESULT gemm_8192 %.1f TFLOP/s\n", tflops);
  return tflops;
}

// Decode-sized GEMMs against 4096 -> 28672 weights; weights rotate over copies.
void DecodeGemms(DeviceBuffer<char>& ws, double copy_gbps) {
  const int n = 28672, k = 4096, copies = 3;
  std::unique_ptr<cuda::GemmRunner> g;
  Check(cuda::GemmRunner::Create(n, k, false, 256, &g));
  std::vector<DeviceBuffer<bf16>> w;
  for (int i = 0; i < copies; ++i) {
    w.emplace_back(size_t(n) * k);
    Fill(w.back(), 1.0f);
  }
  DeviceBuffer<bf16> a(size_t(256) * k), out(size_t(256) * n);
  Fill(a, 1.0f);
  for (int m : {1, 64, 256}) {
    const double ms = MedianMs(
        [&](int i) {
          Check(g->Run(out.get(), a.get(), w[i % copies].get(), nullptr, m, ws.get(), nullptr));
        },
        3, 30);
    const double gbps = 2.0 * n * k / (ms * 1e-3) / 1e9;
    std::printf("RESULT gemm_decode_m%d %.1f GB/s %.3f of copy_bw\n", m, gbps, gbps / copy_gbps);
  }
}

struct AttentionRun {
  double ms = 0, graph_ms = 0, b2b_ms = 0;  // b2b: per run of 10 back to back (decode)
};

// Times one bench case; `rotations` distinct block tables (over disjoint blocks of one
// pool) cycle so that repeated runs touch different cache lines.
AttentionRun TimeAttention(const AttentionCase& c, int rotations,
                           const cuda::PagedAttentionOptions& options) {
  std::mt19937_64 rng(1);
  AttentionBatch b = BuildAttentionBatch(c, rotations, rng);
  const size_t q_elems = size_t(b.num_q_tokens) * c.num_q_heads * c.head_dim;
  const size_t cache_elems = size_t(b.num_blocks) * c.block_size * c.num_kv_heads * c.head_dim;
  DeviceBuffer<bf16> q(q_elems), out(q_elems), k(cache_elems), v(cache_elems);
  Fill(q, 2.0f);
  Fill(k, 1.0f);
  Fill(v, 1.0f);
  // Rotation r uses pool blocks of a fresh permutation, r-th slice.
  std::vector<int32_t> perm(b.num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<DeviceBuffer<int32_t>> tables;
  size_t next = 0;
  for (int r = 0; r < rotations; ++r) {
    std::vector<int32_t> t = b.block_tables;
    for (size_t s = 0; s < b.seq_lens.size(); ++s) {
      const int nb = (b.seq_lens[s] + c.block_size - 1) / c.block_size;
      for (int i = 0; i < nb; ++i) t[s * b.params.max_blocks_per_seq + i] = perm[next++];
    }
    tables.emplace_back(t);
  }
  DeviceBuffer<int32_t> lens(b.seq_lens);
  DeviceBuffer<int32_t> cu(b.cu_seqlens_q.empty() ? std::vector<int32_t>{0} : b.cu_seqlens_q);
  PagedAttentionParams p = b.params;
  p.seq_lens = lens.get();
  p.cu_seqlens_q = b.cu_seqlens_q.empty() ? nullptr : cu.get();
  cuda::PagedAttentionPlan plan;
  p.block_tables = tables[0].get();
  Check(cuda::PlanPagedAttention(p, b.seq_lens.data(), b.params.cu_seqlens_q, &plan, options));
  DeviceBuffer<char> ws(plan.workspace_bytes);
  Check(cuda::UploadPagedAttentionPlan(plan, ws.get(), ws.size(), nullptr));
  auto run = [&](int i, cudaStream_t s) {
    PagedAttentionParams pi = p;
    pi.block_tables = tables[i % rotations].get();
    Check(cuda::PagedAttention(plan, pi, out.get(), q.get(), k.get(), v.get(), ws.get(), s));
  };
  AttentionRun r;
  const int iters = c.q_lens.empty() ? 200 : 20;
  r.ms = MedianMs([&](int i) { run(i, nullptr); }, 5, iters);
  // Back to back: launch latency overlaps the previous run, leaving the kernel's time.
  if (c.q_lens.empty()) {
    constexpr int kBatch = 10;
    r.b2b_ms = MedianMs(
                   [&](int i) {
                     for (int k = 0; k < kBatch; ++k) run(i * kBatch + k, nullptr);
                   },
                   2, 20) /
               kBatch;
  }

  // The engine replays decode steps as CUDA graphs: time that too, one graph per rotation.
  cudaStream_t s;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::vector<cudaGraphExec_t> execs(rotations);
  for (int i = 0; i < rotations; ++i) {
    cudaGraph_t graph;
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    run(i, s);
    CUDA_OK(cudaStreamEndCapture(s, &graph));
    CUDA_OK(cudaGraphInstantiate(&execs[i], graph, 0));
    CUDA_OK(cudaGraphDestroy(graph));
  }
  CUDA_OK(cudaStreamSynchronize(s));
  CUDA_OK(cudaStreamDestroy(s));
  r.graph_ms =
      MedianMs([&](int i) { CUDA_OK(cudaGraphLaunch(execs[i % rotations], nullptr)); }, 5, iters);
  for (cudaGraphExec_t e : execs) cudaGraphExecDestroy(e);
  std::printf("  %s d%d v%d s%d: %zu decode + %zu prefill items, grids %d/%d, %zu merges\n",
              c.name.c_str(), plan.decode_variant, plan.prefill_variant, plan.prefill_schedule,
              plan.decode_items.size(), plan.prefill_items.size(), plan.decode_grid,
              plan.prefill_grid, plan.merge_items.size());
  return r;
}

// only: when set, times just the attention figures whose name contains it.
void Attention(double copy_gbps, const char* only) {
  // Decode cases first (the decode variants), then every prefill variant (the
  // Hopper-only ones, 3 and up, last), the serpentine schedule on the pipelined wgmma
  // ones, and the cluster decode variant last.
  struct Config {
    bool decode;
    int variant, chunk, schedule;
  };
  std::vector<Config> configs;
  // SLUICE_BENCH_SHORT=1 leaves out the longer and shorter piece figures (c128, c512).
  const bool short_run = std::getenv("SLUICE_BENCH_SHORT") != nullptr;
  auto add_decode = [&](int d) {
    for (int chunk : {0, 128, 512}) {
      // One CTA per multiprocessor (d2, d3, d6) already makes 256-position pieces, and
      // clusters (d4) hold at most 16.
      if (chunk == 128 && d >= 2) continue;
      if (chunk != 0 && short_run) continue;
      configs.push_back({true, d, chunk, -1});
    }
  };
  // The cluster variant (d4), a different launch path, last.
  for (int d = 0; d < cuda::kNumDecodeVariants; ++d) {
    if (d != 4) add_decode(d);
  }
  // Prefill figures without a suffix keep the round-robin order of runs 1-4; "_s1" is
  // the serpentine order.
  for (int v = 0; v < cuda::kNumPrefillVariants; ++v) configs.push_back({false, v, 0, 0});
  for (int v : {5, 8, 9}) configs.push_back({false, v, 0, 1});
  add_decode(4);
  for (const Config& cfg : configs) {
    for (const AttentionCase& c : AttentionBenchCases()) {
      const bool decode = c.q_lens.empty();
      if (decode != cfg.decode) continue;
      // Longer split pieces only matter where one long sequence must be split.
      if (decode && cfg.chunk != 0 && (c.seq_lens.size() != 1 || c.seq_lens[0] < 4096)) {
        continue;
      }
      std::string name = c.name + (decode ? "_d" : "_v") + std::to_string(cfg.variant);
      if (cfg.chunk != 0) name += "_c" + std::to_string(cfg.chunk);
      if (cfg.schedule == 1) name += "_s1";
      if (only != nullptr && name.find(only) == std::string::npos) continue;
      double kv_bytes = 0, flops = 0;
      for (size_t s = 0; s < c.seq_lens.size(); ++s) {
        kv_bytes += 2.0 * 2.0 * c.seq_lens[s] * c.num_kv_heads * c.head_dim;
        const double l = decode ? 1 : c.q_lens[s];
        flops += 2.0 * 2.0 * c.num_q_heads * l * l * c.head_dim / 2.0;
      }
      const int rotations = kv_bytes < 256e6 ? static_cast<int>(std::ceil(256e6 / kv_bytes)) : 1;
      cuda::PagedAttentionOptions options;
      (decode ? options.decode_variant : options.prefill_variant) = cfg.variant;
      options.decode_min_chunk = cfg.chunk;
      options.schedule = cfg.schedule;
      const AttentionRun r = TimeAttention(c, std::min(rotations, 16), options);
      if (decode) {
        for (auto [g, ms] :
             {std::pair{"", r.ms}, std::pair{"_graph", r.graph_ms}, std::pair{"_b2b", r.b2b_ms}}) {
          const double gbps = kv_bytes / (ms * 1e-3) / 1e9;
          std::printf("RESULT %s%s %.2f us %.1f GB/s %.3f of copy_bw\n", name.c_str(), g, ms * 1e3,
                      gbps, gbps / copy_gbps);
        }
      } else {
        std::printf("RESULT %s %.1f TFLOP/s %.3f ms (graph %.3f ms)\n", name.c_str(),
                    flops / (r.ms * 1e-3) / 1e12, r.ms, r.graph_ms);
      }
      std::fflush(stdout);
    }
  }
}

void Sampling() {
  const int rows = 64, vocab = 128256;
  DeviceBuffer<float> logits(size_t(rows) * vocab);
  Fill(logits, 8.0f);
  std::vector<SamplingRow> cfg(rows);
  for (int r = 0; r < rows; ++r) {
    cfg[r].temperature = 0.8f;
    cfg[r].top_k = 50;
    cfg[r].top_p = 0.9f;
    cfg[r].min_p = 0.01f;
    cfg[r].seed = r;
  }
  DeviceBuffer<SamplingRow> dcfg(cfg);
  DeviceBuffer<int32_t> ids(rows);
  const double ms = MedianMs(
      [&](int) { Check(cuda::Sample(ids.get(), logits.get(), dcfg.get(), rows, vocab, nullptr)); },
      3, 50);
  std::printf("RESULT sampling_b64_v128256 %.2f us\n", ms * 1e3);
}

}  // namespace
}  // namespace sluice::kernels::testing

// Usage: kernel_bench [name-filter]. With a filter, only matching attention figures run
// (for profiling one kernel under ncu).
int main(int argc, char** argv) {
  using namespace sluice::kernels::testing;
  SkipWithoutGpu();
  if (argc > 1) {
    Attention(1.0, argv[1]);
    return 0;
  }
  cudaDeviceProp prop;
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, %.0f MB L2\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize / 1e6);
  const double copy = CopyBandwidth();
  DeviceBuffer<char> ws(sluice::kernels::cuda::kGemmWorkspaceBytes);
  GemmRate(ws);
  DecodeGemms(ws, copy);
  Sampling();
  Attention(copy, nullptr);
  return 0;
}
