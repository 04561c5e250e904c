// The CUDA backend's runner: bf16 weights on one GPU (fused QKV and gate/up), a paged
// bf16 KV cache sized from free memory, the kernels of kernels/, sampling on the device,
// and CUDA graphs for decode batches.
//
// Step shape: one host-to-device copy of the step's inputs, then L + 1 pieces (embedding
// and the first QKV; per layer the output projection, MLP and the next QKV; the last
// holds the final norm, lm_head and sampling) with one paged-attention launch between
// two pieces, one device-to-host copy of the sampled ids, one synchronisation. For
// decode batches each piece is a CUDA graph captured per padded batch size (1, 2, 4, 8,
// then steps of 8 up to max_num_seqs); attention runs between the graphs, since its
// work split depends on the sequence lengths of the step. Padded rows write to slot -1,
// which the cache write skips, and are left out of attention.
//
// This header needs no CUDA headers; a build without nvcc links a version of
// CreateCudaRunner that returns an error saying so.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"
#include "engine/runner/runner.h"

namespace sluice {

struct CudaRunnerOptions {
  std::string model_dir;
  bool random_weights = false;          // config.json only; weights drawn as RandomWeights does
  uint64_t seed = 0;                    // of the random weights
  double gpu_memory_utilization = 0.9;  // fraction of the GPU's memory this process may use
  int num_kv_blocks = 0;                // 0: as many as the memory budget holds
  int block_size = 16;
  int max_num_seqs = 256;             // the largest decode graph
  int max_num_batched_tokens = 2048;  // activation buffers hold this many tokens
  bool enforce_eager = false;         // no CUDA graphs
  // Time cuBLASLt's candidates per batch size at load. Off by default: on the H100 the
  // timed picks made the batch-1 decode step slower in the graphs (bench/RESULTS.md).
  bool tune_gemms = false;
  int device = 0;
  // Run the layers' all-reduces (after the output projection and the MLP) through a
  // one-rank NCCL group, as a tensor-parallel rank does: the same results, through NCCL
  // and inside the graphs.
  bool nccl_one_rank = false;
  LoadProgress progress;  // per layer of weights
};

// What the runner reports about itself after loading.
struct CudaRunnerInfo {
  std::string device_name;
  double weight_gib = 0;
  double kv_cache_gib = 0;
  int num_kv_blocks = 0;
  int num_graphs = 0;
  double graph_capture_s = 0;
  double gemm_tune_s = 0;
};

// Whether this build has the CUDA backend.
bool CudaBackendBuilt();

// Device-to-device copy bandwidth of `device` in GB/s, counting bytes read and written
// (the roofline's denominator): the best of a few 1 GiB copies.
absl::StatusOr<double> MeasureCudaCopyBandwidth(int device);

// Loads the model onto the GPU. Errors: no CUDA device (with the driver's reason), a
// model that does not fit the memory budget (with the numbers), the checkpoint's errors.
absl::StatusOr<std::unique_ptr<Runner>> CreateCudaRunner(const CudaRunnerOptions& options,
                                                         CudaRunnerInfo* info = nullptr);

}  // namespace sluice
