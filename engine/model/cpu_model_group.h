// The CPU backend's model over one or more tensor-parallel ranks (tensor_parallel.h):
// rank 0 runs on the calling thread, ranks 1..N-1 on threads of their own, each with its
// own KV cache (its heads, the same block ids) and its slice of the weights, meeting
// through the in-process Communicator. With one rank it is the model alone, no threads.
//
// A rank that fails aborts the group: the step fails on every rank with the failing
// rank's error (named "tensor parallel rank R: ..."), and so does every later step, as
// with a device that has gone away. A rank that waits longer than the group's timeout at
// a collective aborts it the same way.
//
// Thread safety: Forward is called by one thread at a time (the engine's).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/cpu_model.h"
#include "engine/parallel/communicator.h"

namespace sluice {

class CpuModelGroup {
 public:
  // One rank: `model` (which engines that never run at once may share).
  CpuModelGroup(std::shared_ptr<CpuModel> model, int num_blocks, int block_size);
  // `size` ranks over the whole model's `weights`, sharded here. Errors: a size the model
  // cannot be split by (CheckTensorParallel).
  static absl::StatusOr<std::unique_ptr<CpuModelGroup>> Create(
      const ModelConfig& config, const ModelWeights& weights, int size, int num_blocks,
      int block_size, std::chrono::milliseconds timeout = std::chrono::seconds(120));
  // DIR's checkpoint (or, with random_weights, its config's random model of `seed`)
  // over `size` ranks. The whole weights are held only while the shards are cut.
  static absl::StatusOr<std::unique_ptr<CpuModelGroup>> Load(
      const std::string& dir, int size, int num_blocks, int block_size, bool random_weights = false,
      uint64_t seed = 0, const LoadProgress& progress = nullptr,
      std::chrono::milliseconds timeout = std::chrono::seconds(120));
  ~CpuModelGroup();
  CpuModelGroup(const CpuModelGroup&) = delete;
  CpuModelGroup& operator=(const CpuModelGroup&) = delete;

  // Every rank runs the batch; `logits` gets rank 0's ([logits_rows, vocab]).
  absl::Status Forward(const ForwardBatch& batch, std::vector<float>& logits);

  // Called on each rank's thread before its part of every step, with the rank's
  // communicator (nullptr alone); an error fails that rank there (fault injection: a rank
  // that dies mid-step, or one that stalls until its group gives up on it).
  using RankHook = std::function<absl::Status(int rank, const Communicator* comm)>;
  void SetRankHook(RankHook hook) { hook_ = std::move(hook); }

  int size() const { return static_cast<int>(models_.size()); }
  const CpuModel& rank(int r) const { return *models_[r]; }
  const ModelConfig& config() const { return models_[0]->config(); }
  const kernels::KvCacheShape& cache_shape() const { return caches_[0].shape(); }

  void ReserveScratch(int max_tokens, int max_rows);
  // `threads` intra-op threads in all, split evenly over the ranks (at least one each):
  // each rank's GEMMs and attention run over a pool of its own. Default: one each.
  void SetThreads(int threads);
  // Summed over the ranks.
  int64_t weight_bytes() const;
  int64_t scratch_bytes() const;
  int64_t kv_bytes() const;

 private:
  CpuModelGroup() = default;
  absl::Status RunRank(int rank, const ForwardBatch& batch, std::vector<float>& logits);
  void Worker(int rank);

  std::vector<std::unique_ptr<Communicator>> comms_;  // before the models that use them
  std::vector<std::shared_ptr<CpuModel>> models_;
  std::vector<CpuKvCache> caches_;
  std::vector<std::vector<float>> rank_logits_;  // ranks 1..N-1 (rank 0 writes the caller's)
  RankHook hook_;
  std::chrono::milliseconds timeout_{0};

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  const ForwardBatch* batch_ = nullptr;
  uint64_t job_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  bool broken_ = false;  // a rank never came back from a step
  std::vector<std::thread> threads_;
};

}  // namespace sluice
