// The fused MoE on the GPU against cpu::RouteTopK and cpu::MoeExperts over a table of
// shapes: 8 to 128 experts, top-k 1 to 8, 1 to 4096 tokens (so that most experts receive
// none at small batches and both row tiles are used), each family's routing and
// activation with and without biases, a skewed routing that sends every token to the
// same experts, the output written over the input, poisoned outputs and workspace, and
// a CUDA graph of the layer replayed on new router logits.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "gpu_check.h"
#include "sluice/kernels/cuda/moe.h"
#include "sluice/kernels/moe.h"

namespace sluice::kernels::testing {
namespace {

enum class Flavor { kQwen3, kNoRenorm, kGptOss };

MoeShape ShapeOf(int experts, int top_k, int hidden, int inter, Flavor f) {
  MoeShape s;
  s.num_experts = experts;
  s.top_k = top_k;
  s.hidden = hidden;
  s.intermediate = inter;
  s.routing = f == Flavor::kGptOss ? MoeRouting::kTopKSoftmax : MoeRouting::kSoftmaxTopK;
  s.renormalize = f == Flavor::kQwen3;
  s.activation = f == Flavor::kGptOss ? MoeActivation::kClampedSwiGlu : MoeActivation::kSiluAndMul;
  return s;
}

// Router logits on a 1/16 grid: equal logits tie exactly on both sides (and go to the
// lower id), unequal ones are far enough apart that rounding cannot reorder them.
// `skewed` lifts the first top_k experts above the rest for every token.
std::vector<float> Logits(int tokens, const MoeShape& s, bool skewed) {
  std::vector<float> l(size_t(tokens) * s.num_experts);
  std::uniform_int_distribution<int> grid(-48, 48);
  for (size_t i = 0; i < l.size(); ++i) {
    l[i] = grid(Rng()) / 16.0f;
    if (skewed && int(i % s.num_experts) < s.top_k) l[i] += 8.0f;
  }
  return l;
}

struct Experts {
  std::vector<bf16> gate_up, gate_up_bias, down, down_bias;
  std::vector<float> gate_up_f, gate_up_bias_f, down_f, down_bias_f;
};

// Weights scaled by 1/sqrt(fan-in), so that activations stay near 1.
Experts RandomExperts(const MoeShape& s, bool bias) {
  Experts e;
  const float a = std::sqrt(3.0f / s.hidden), b = std::sqrt(3.0f / s.intermediate);
  RandomBf16(size_t(s.num_experts) * 2 * s.intermediate * s.hidden, -a, a, &e.gate_up,
             &e.gate_up_f);
  RandomBf16(size_t(s.num_experts) * s.hidden * s.intermediate, -b, b, &e.down, &e.down_f);
  if (bias) {
    RandomBf16(size_t(s.num_experts) * 2 * s.intermediate, -0.5f, 0.5f, &e.gate_up_bias,
               &e.gate_up_bias_f);
    RandomBf16(size_t(s.num_experts) * s.hidden, -0.5f, 0.5f, &e.down_bias, &e.down_bias_f);
  }
  return e;
}

std::string Tag(const MoeShape& s, int tokens, Flavor f) {
  static const char* names[] = {"qwen3", "no-renorm", "gpt-oss"};
  return std::to_string(tokens) + " tokens, " + std::to_string(s.num_experts) + " experts top-" +
         std::to_string(s.top_k) + ", " + std::to_string(s.hidden) + "x" +
         std::to_string(s.intermediate) + " " + names[int(f)];
}

void RouteCase(int tokens, const MoeShape& s, bool skewed, const std::string& tag) {
  const std::vector<float> logits = Logits(tokens, s, skewed);
  std::vector<int32_t> want_ids(size_t(tokens) * s.top_k);
  std::vector<float> want_w(want_ids.size());
  GPU_CHECK_OK(cpu::RouteTopK(want_ids.data(), want_w.data(), logits.data(), tokens, s.num_experts,
                              s.top_k, s.routing, s.renormalize));
  DeviceBuffer<float> dl(logits), dw(want_w.size());
  DeviceBuffer<int32_t> di(want_ids.size());
  dw.Poison();
  di.Poison();
  GPU_CHECK_OK(cuda::MoeRoute(di.get(), dw.get(), dl.get(), tokens, s.num_experts, s.top_k,
                              s.routing, s.renormalize, nullptr));
  const std::vector<int32_t> ids = di.Download();
  size_t wrong = 0;
  for (size_t i = 0; i < ids.size(); ++i) wrong += ids[i] != want_ids[i];
  GPU_CHECK(wrong == 0, "route %s: %zu of %zu expert ids differ", tag.c_str(), wrong, ids.size());
  AllClose(dw.Download(), want_w, 1e-6f, 1e-5f, "route weights " + tag);
}

void MoeCase(int experts, int top_k, int hidden, int inter, Flavor f,
             const std::vector<int>& token_counts, bool skewed = false) {
  const MoeShape s = ShapeOf(experts, top_k, hidden, inter, f);
  const bool bias = f == Flavor::kGptOss;
  const Experts e = RandomExperts(s, bias);
  DeviceBuffer<bf16> dgu(e.gate_up), ddown(e.down), dgub(e.gate_up_bias), ddb(e.down_bias);
  MoeExpertWeights<bf16> w{dgu.get(), bias ? dgub.get() : nullptr, ddown.get(),
                           bias ? ddb.get() : nullptr};
  MoeExpertWeights<float> wf{e.gate_up_f.data(), bias ? e.gate_up_bias_f.data() : nullptr,
                             e.down_f.data(), bias ? e.down_bias_f.data() : nullptr};
  int max_tokens = 1;
  for (int n : token_counts) max_tokens = std::max(max_tokens, n);
  DeviceBuffer<char> ws(cuda::MoeWorkspaceBytes(s, max_tokens));
  for (int n : token_counts) {
    const std::string tag = Tag(s, n, f) + (skewed ? " skewed" : "");
    RouteCase(n, s, skewed, tag);
    std::vector<bf16> x;
    std::vector<float> xf;
    RandomBf16(size_t(n) * hidden, -1.0f, 1.0f, &x, &xf);
    const std::vector<float> logits = Logits(n, s, skewed);
    std::vector<float> want(xf.size());
    GPU_CHECK_OK(cpu::MoeExperts(want.data(), xf.data(), logits.data(), wf, s, n));
    DeviceBuffer<bf16> dx(x), dout(x.size());
    DeviceBuffer<float> dl(logits);
    dout.Poison();
    ws.Poison();
    GPU_CHECK_OK(cuda::Moe(dout.get(), dx.get(), dl.get(), w, s, n, ws.get(), max_tokens, nullptr));
    const std::vector<bf16> got = dout.Download();
    AllClose(ToFloat(got), want, 3e-2f, 3e-2f, "moe " + tag);
    // In place: the same values, bit for bit.
    GPU_CHECK_OK(cuda::Moe(dx.get(), dx.get(), dl.get(), w, s, n, ws.get(), max_tokens, nullptr));
    const std::vector<bf16> in_place = dx.Download();
    size_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) differ += in_place[i].bits != got[i].bits;
    GPU_CHECK(differ == 0, "moe in place %s: %zu elements differ", tag.c_str(), differ);
  }
}

// A graph captured once and replayed on other logits gives what an eager call gives:
// the launch shapes depend on the token count alone.
void GraphCase(int experts, int top_k, int hidden, int inter, int n) {
  const MoeShape s = ShapeOf(experts, top_k, hidden, inter, Flavor::kQwen3);
  const Experts e = RandomExperts(s, false);
  DeviceBuffer<bf16> dgu(e.gate_up), ddown(e.down);
  MoeExpertWeights<bf16> w{dgu.get(), nullptr, ddown.get(), nullptr};
  std::vector<bf16> x;
  std::vector<float> xf;
  RandomBf16(size_t(n) * hidden, -1.0f, 1.0f, &x, &xf);
  DeviceBuffer<bf16> dx(x), dout(x.size());
  DeviceBuffer<float> dl(Logits(n, s, false));
  DeviceBuffer<char> ws(cuda::MoeWorkspaceBytes(s, n));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  GPU_CHECK_OK(cuda::Moe(dout.get(), dx.get(), dl.get(), w, s, n, ws.get(), n, stream));
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  for (bool skewed : {false, true}) {
    dl.Upload(Logits(n, s, skewed));
    dout.Poison();
    CUDA_OK(cudaDeviceSynchronize());  // the legacy stream's copies before `stream` reads
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    const std::vector<bf16> replayed = dout.Download();
    dout.Poison();
    CUDA_OK(cudaDeviceSynchronize());
    GPU_CHECK_OK(cuda::Moe(dout.get(), dx.get(), dl.get(), w, s, n, ws.get(), n, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    const std::vector<bf16> eager = dout.Download();
    size_t differ = 0;
    for (size_t i = 0; i < eager.size(); ++i) differ += eager[i].bits != replayed[i].bits;
    GPU_CHECK(differ == 0, "moe graph, %d tokens%s: %zu elements differ from eager", n,
              skewed ? " skewed" : "", differ);
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  CUDA_OK(cudaStreamDestroy(stream));
}

void RejectsBadShapes() {
  MoeShape s = ShapeOf(8, 2, 64, 36, Flavor::kQwen3);  // intermediate not a multiple of 8
  DeviceBuffer<char> ws(cuda::MoeWorkspaceBytes(s, 4));
  DeviceBuffer<bf16> buf(size_t(8) * 2 * 64 * 64);
  MoeExpertWeights<bf16> w{buf.get(), nullptr, buf.get(), nullptr};
  DeviceBuffer<float> dl(size_t(4) * 8);
  GPU_CHECK(!cuda::Moe(buf.get(), buf.get(), dl.get(), w, s, 4, ws.get(), 4, nullptr).ok(),
            "intermediate 36 accepted");
  s = ShapeOf(8, 9, 64, 32, Flavor::kQwen3);  // top-k above the experts
  GPU_CHECK(!cuda::Moe(buf.get(), buf.get(), dl.get(), w, s, 4, ws.get(), 4, nullptr).ok(),
            "top-9 of 8 accepted");
  s = ShapeOf(8, 2, 64, 32, Flavor::kQwen3);
  GPU_CHECK(!cuda::Moe(buf.get(), buf.get(), dl.get(), w, s, 5, ws.get(), 4, nullptr).ok(),
            "5 tokens in a workspace for 4 accepted");
  GPU_CHECK_OK(cuda::Moe(buf.get(), buf.get(), dl.get(), w, s, 0, ws.get(), 4, nullptr));
}

}  // namespace
}  // namespace sluice::kernels::testing

int main() {
  using namespace sluice::kernels::testing;
  SkipWithoutGpu();
  const bool quick = Quick();
  RejectsBadShapes();
  using V = std::vector<int>;
  MoeCase(8, 2, 256, 128, Flavor::kQwen3,
          quick ? V{1, 130} : V{1, 7, 300, 4096});  // Mixtral's routing
  MoeCase(64, 1, 128, 64, Flavor::kNoRenorm, quick ? V{3} : V{1, 33, 1000});
  MoeCase(64, 4, 256, 96, Flavor::kGptOss,
          quick ? V{5} : V{5, 512, 2048});  // a partial column tile
  MoeCase(128, 8, 256, 128, Flavor::kQwen3, quick ? V{2, 512} : V{1, 3, 64, 511, 512, 4096});
  MoeCase(128, 8, 256, 128, Flavor::kQwen3, quick ? V{600} : V{2048}, /*skewed=*/true);
  MoeCase(128, 8, 2048, 768, Flavor::kQwen3, quick ? V{1} : V{1, 16, 64});  // Qwen3-30B-A3B's layer
  MoeCase(32, 4, 2880, 2880, Flavor::kGptOss, quick ? V{1} : V{1, 8});      // gpt-oss-20b's layer
  // Reductions that end inside a k tile (200, 40) and a partial column tile on both passes.
  MoeCase(16, 3, 200, 40, Flavor::kGptOss, quick ? V{1} : V{1, 700});
  MoeCase(64, 32, 64, 32, Flavor::kNoRenorm, V{3});  // the largest top-k
  GraphCase(128, 8, 256, 128, quick ? 4 : 64);
  return Finish("moe_gpu_test");
}
