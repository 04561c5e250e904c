#include "engine/model/cpu_model_group.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/tensor_parallel.h"

namespace sluice {

CpuModelGroup::CpuModelGroup(std::shared_ptr<CpuModel> model, int num_blocks, int block_size) {
  caches_.emplace_back(model->local_config(), num_blocks, block_size);
  models_.push_back(std::move(model));
}

void CpuModelGroup::SetThreads(int threads) {
  const int each = std::max(1, threads / size());
  for (auto& m : models_) {
    m->SetThreadPool(each > 1 ? std::make_shared<kernels::ThreadPool>(each) : nullptr);
  }
}

absl::StatusOr<std::unique_ptr<CpuModelGroup>> CpuModelGroup::Create(
    const ModelConfig& config, const ModelWeights& weights, int size, int num_blocks,
    int block_size, std::chrono::milliseconds timeout) {
  SLUICE_RETURN_IF_ERROR(CheckTensorParallel(config, size));
  std::unique_ptr<CpuModelGroup> g(new CpuModelGroup());
  g->timeout_ = timeout;
  g->comms_ = size > 1 ? MakeThreadCommunicators(size, timeout)
                       : std::vector<std::unique_ptr<Communicator>>{};
  for (int r = 0; r < size; ++r) {
    Communicator* comm = size > 1 ? g->comms_[r].get() : nullptr;
    g->models_.push_back(CpuModel::Rank(config, weights, PlanShard(config, r, size), comm));
    g->caches_.emplace_back(g->models_.back()->local_config(), num_blocks, block_size);
  }
  g->rank_logits_.resize(size);
  for (int r = 1; r < size; ++r) g->threads_.emplace_back(&CpuModelGroup::Worker, g.get(), r);
  return g;
}

absl::StatusOr<std::unique_ptr<CpuModelGroup>> CpuModelGroup::Load(
    const std::string& dir, int size, int num_blocks, int block_size, bool random_weights,
    uint64_t seed, const LoadProgress& progress, std::chrono::milliseconds timeout) {
  SLUICE_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(dir));
  SLUICE_RETURN_IF_ERROR(CheckTensorParallel(config, size));  // before reading gigabytes
  ModelWeights weights;
  if (random_weights) {
    SLUICE_ASSIGN_OR_RETURN(weights, RandomWeights(config, seed));
  } else {
    SLUICE_ASSIGN_OR_RETURN(auto ckpt, Checkpoint::OpenDir(dir));
    SLUICE_ASSIGN_OR_RETURN(weights, LoadWeights(*ckpt, config, progress));
  }
  return Create(config, weights, size, num_blocks, block_size, timeout);
}

CpuModelGroup::~CpuModelGroup() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) {
    // A rank stuck in a step of its own (never seen in practice: the communicator's
    // timeout ends every wait) cannot be joined; it is left to the process's exit.
    if (broken_) {
      t.detach();
    } else {
      t.join();
    }
  }
}

absl::Status CpuModelGroup::RunRank(int rank, const ForwardBatch& batch,
                                    std::vector<float>& logits) {
  absl::Status st =
      hook_ ? hook_(rank, size() > 1 ? comms_[rank].get() : nullptr) : absl::OkStatus();
  if (st.ok()) st = models_[rank]->Forward(batch, caches_[rank], logits);
  if (!st.ok() && size() > 1) {
    // The first rank to fail names the error; the others' waits end with it.
    comms_[rank]->Abort(
        absl::Status(st.code(), absl::StrCat("tensor parallel rank ", rank, ": ", st.message())));
  }
  return st;
}

void CpuModelGroup::Worker(int rank) {
  uint64_t seen = 0;
  for (;;) {
    const ForwardBatch* batch = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || job_ != seen; });
      if (stop_) return;
      seen = job_;
      batch = batch_;
    }
    RunRank(rank, *batch, rank_logits_[rank]).IgnoreError();  // the group's status reports it
    {
      std::lock_guard<std::mutex> lock(mu_);
      --pending_;
    }
    done_cv_.notify_all();
  }
}

absl::Status CpuModelGroup::Forward(const ForwardBatch& batch, std::vector<float>& logits) {
  if (size() == 1) return RunRank(0, batch, logits);
  if (absl::Status s = comms_[0]->status(); !s.ok()) return s;  // a dead group stays dead
  if (broken_) return absl::UnavailableError("tensor parallel: a rank never finished a step");
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch_ = &batch;
    pending_ = size() - 1;
    ++job_;
  }
  work_cv_.notify_all();
  const absl::Status mine = RunRank(0, batch, logits);
  {
    std::unique_lock<std::mutex> lock(mu_);
    // Once rank 0 is done, the others are done with their collectives or aborted out of
    // them: they return within one collective's wait at most. One that does not is stuck
    // outside the collectives.
    if (!done_cv_.wait_for(lock, timeout_ + std::chrono::seconds(1),
                           [&] { return pending_ == 0; })) {
      broken_ = true;
      comms_[0]->Abort(absl::UnavailableError("tensor parallel: a rank never finished a step"));
    }
  }
  if (absl::Status s = comms_[0]->status(); !s.ok()) return s;
  return mine;
}

void CpuModelGroup::ReserveScratch(int max_tokens, int max_rows) {
  for (auto& m : models_) m->ReserveScratch(max_tokens, max_rows);
}

int64_t CpuModelGroup::weight_bytes() const {
  int64_t b = 0;
  for (const auto& m : models_) b += m->weight_bytes();
  return b;
}

int64_t CpuModelGroup::scratch_bytes() const {
  int64_t b = 0;
  for (const auto& m : models_) b += m->scratch_bytes();
  for (const auto& l : rank_logits_) b += static_cast<int64_t>(l.capacity()) * 4;
  return b;
}

int64_t CpuModelGroup::kv_bytes() const {
  int64_t b = 0;
  for (const auto& c : caches_) b += c.bytes();
  return b;
}

}  // namespace sluice
