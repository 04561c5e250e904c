// The CUDA runner's decode graphs: each piece of the forward pass (cuda_runner.h) captured
// once per padded batch size at load, and the step's forward pass, which replays them for
// a decode batch and runs the pieces eagerly otherwise. Attention runs between the pieces
// in both cases.
#include <cuda_runtime.h>

#include <chrono>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/runner/cuda_runner_internal.h"
#include "sluice/kernels/cuda/sampling.h"

namespace sluice::cuda_runner_internal {

int CudaRunner::GraphIndex(int n) const {
  for (size_t g = 0; g < graph_sizes_.size(); ++g) {
    if (graph_sizes_[g] >= n) return static_cast<int>(g);
  }
  return -1;
}

absl::Status CudaRunner::CaptureGraphs(CudaRunnerInfo* info) {
  const auto start = std::chrono::steady_clock::now();
  size_t free_before = 0, free_after = 0, total = 0;
  SLUICE_RETURN_IF_ERROR(Cuda(cudaMemGetInfo(&free_before, &total), "memory info"));
  for (int b : {1, 2, 4}) {
    if (b < max_seqs_) graph_sizes_.push_back(b);
  }
  for (int b = 8; b < max_seqs_; b += 8) graph_sizes_.push_back(b);
  graph_sizes_.push_back(max_seqs_);
  // Inputs of a padded batch: token 0 at position 0, slot -1, greedy sampling. The pieces
  // never read seq_lens or block tables (attention runs outside the graphs).
  int32_t* ids = host_inputs_.as<int32_t>(layout_.ids);
  int32_t* pos = host_inputs_.as<int32_t>(layout_.positions);
  int64_t* slots = host_inputs_.as<int64_t>(layout_.slots);
  kernels::SamplingRow* sampling = host_inputs_.as<kernels::SamplingRow>(layout_.sampling);
  for (int i = 0; i < max_tokens_; ++i) {
    ids[i] = 0;
    pos[i] = 0;
    slots[i] = -1;
  }
  for (int i = 0; i < max_seqs_; ++i) {
    sampling[i] = kernels::SamplingRow();
    sampling[i].temperature = 0.0f;
  }
  SLUICE_RETURN_IF_ERROR(
      Cuda(cudaMemcpyAsync(inputs_.as<void>(), host_inputs_.as<void>(), layout_.block_tables,
                           cudaMemcpyHostToDevice, stream_),
           "graph inputs"));
  graphs_.assign(graph_sizes_.size(),
                 std::vector<cudaGraphExec_t>(config_.num_layers + 1, nullptr));
  // Largest first: smaller graphs reuse the memory pool of larger ones.
  for (int g = static_cast<int>(graph_sizes_.size()) - 1; g >= 0; --g) {
    const int b = graph_sizes_[g];
    for (int k = 0; k <= config_.num_layers; ++k) {
      // One eager run first: cuBLASLt settles its state outside capture.
      SLUICE_RETURN_IF_ERROR(RunPiece(k, b, b, false));
      SLUICE_RETURN_IF_ERROR(
          Cuda(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "begin capture"));
      const absl::Status run = RunPiece(k, b, b, false);
      cudaGraph_t graph = nullptr;
      const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
      if (!run.ok() && graph != nullptr) cudaGraphDestroy(graph);
      SLUICE_RETURN_IF_ERROR(run);
      SLUICE_RETURN_IF_ERROR(Cuda(end, "end capture"));
      const cudaError_t inst = cudaGraphInstantiate(&graphs_[g][k], graph, 0);
      cudaGraphDestroy(graph);
      SLUICE_RETURN_IF_ERROR(
          Cuda(inst, absl::StrCat("instantiating the graph of piece ", k, " at batch ", b)));
    }
  }
  info->num_graphs = static_cast<int>(graph_sizes_.size()) * (config_.num_layers + 1);
  SLUICE_RETURN_IF_ERROR(Cuda(cudaStreamSynchronize(stream_), "graph capture"));
  // What capture took from the device: the graphs' memory pool and their executables.
  SLUICE_RETURN_IF_ERROR(Cuda(cudaMemGetInfo(&free_after, &total), "memory info"));
  graph_bytes_ = free_before > free_after ? static_cast<int64_t>(free_before - free_after) : 0;
  info->graph_capture_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return absl::OkStatus();
}

absl::Status CudaRunner::Forward(int n, int rows, bool gather, int graph,
                                 const std::function<absl::Status()>& before_sampling) {
  for (int k = 0; k <= config_.num_layers; ++k) {
    if (k == config_.num_layers) SLUICE_RETURN_IF_ERROR(before_sampling());
    if (graph >= 0) {
      SLUICE_RETURN_IF_ERROR(Cuda(cudaGraphLaunch(graphs_[graph][k], stream_), "graph launch"));
    } else {
      SLUICE_RETURN_IF_ERROR(RunPiece(k, n, rows, gather));
    }
    if (k < config_.num_layers) SLUICE_RETURN_IF_ERROR(Attention(k));
  }
  return absl::OkStatus();
}

}  // namespace sluice::cuda_runner_internal
