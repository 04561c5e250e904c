#include "engine/parallel/communicator.h"

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"

namespace sluice {
namespace {

size_t ElemBytes(CommDtype dtype) { return dtype == CommDtype::kFloat32 ? 4 : 2; }

class SingleRankCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  absl::Status AllReduceSum(void*, size_t, CommDtype, cudaStream_t) override {
    return absl::OkStatus();
  }
  absl::Status AllGather(const void* send, void* recv, size_t count, CommDtype dtype,
                         cudaStream_t) override {
    if (send != recv) std::memmove(recv, send, count * ElemBytes(dtype));
    return absl::OkStatus();
  }
  absl::Status Broadcast(void*, size_t, int, cudaStream_t) override { return absl::OkStatus(); }
  absl::Status Barrier() override { return absl::OkStatus(); }
  void Abort(const absl::Status&) override {}
  absl::Status status() const override { return absl::OkStatus(); }
};

// What the ranks of an in-process group share: a generation-counting barrier that an
// abort or a timeout breaks, and the buffer each rank publishes for the collective in
// progress.
struct ThreadGroup {
  ThreadGroup(int size, std::chrono::milliseconds timeout)
      : size(size), timeout(timeout), published(static_cast<size_t>(size), nullptr) {}

  // Waits for every rank. Returns the abort status if the group is (or becomes) aborted
  // first; aborts it with DeadlineExceeded after `timeout`.
  absl::Status Wait(int rank) {
    std::unique_lock<std::mutex> lock(mu);
    if (!aborted.ok()) return aborted;
    const uint64_t gen = generation;
    if (++arrived == size) {
      arrived = 0;
      ++generation;
      cv.notify_all();
      return absl::OkStatus();
    }
    const bool done =
        cv.wait_for(lock, timeout, [&] { return generation != gen || !aborted.ok(); });
    if (generation != gen) return absl::OkStatus();
    if (!done) {
      aborted = absl::DeadlineExceededError(
          absl::StrCat("tensor parallel: rank ", rank, " waited ", timeout.count(),
                       " ms for the other ranks at a collective (a rank failed or hangs)"));
      cv.notify_all();
    }
    return aborted;
  }

  absl::Status Status() {
    std::lock_guard<std::mutex> lock(mu);
    return aborted;
  }

  void Abort(const absl::Status& why) {
    std::lock_guard<std::mutex> lock(mu);
    if (aborted.ok()) aborted = why.ok() ? absl::AbortedError("tensor parallel: aborted") : why;
    cv.notify_all();
  }

  const int size;
  const std::chrono::milliseconds timeout;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  uint64_t generation = 0;
  absl::Status aborted;
  // Written by each rank for its own slot before the first Wait of a collective, read by
  // all between that Wait and the next: no lock needed beyond the barrier's.
  std::vector<const void*> published;
};

class ThreadCommunicator : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank)
      : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size; }

  absl::Status AllReduceSum(void* data, size_t count, CommDtype dtype, cudaStream_t) override {
    if (absl::Status s = HostFloat(dtype, "all-reduce"); !s.ok()) return s;
    group_->published[rank_] = data;
    if (absl::Status s = group_->Wait(rank_); !s.ok()) return s;
    // Every rank sums the whole buffer in rank order into its own scratch, so that all
    // hold the same bits; nobody writes a published buffer until all have read them.
    sum_.resize(count);
    const float* first = static_cast<const float*>(group_->published[0]);
    for (size_t i = 0; i < count; ++i) sum_[i] = first[i];
    for (int r = 1; r < group_->size; ++r) {
      const float* src = static_cast<const float*>(group_->published[r]);
      for (size_t i = 0; i < count; ++i) sum_[i] += src[i];
    }
    if (absl::Status s = group_->Wait(rank_); !s.ok()) return s;
    std::memcpy(data, sum_.data(), count * sizeof(float));
    return absl::OkStatus();
  }

  absl::Status AllGather(const void* send, void* recv, size_t count, CommDtype dtype,
                         cudaStream_t) override {
    if (absl::Status s = HostFloat(dtype, "all-gather"); !s.ok()) return s;
    group_->published[rank_] = send;
    if (absl::Status s = group_->Wait(rank_); !s.ok()) return s;
    const size_t bytes = count * sizeof(float);
    for (int r = 0; r < group_->size; ++r) {
      std::memcpy(static_cast<char*>(recv) + r * bytes, group_->published[r], bytes);
    }
    return group_->Wait(rank_);
  }

  absl::Status Broadcast(void* data, size_t bytes, int root, cudaStream_t) override {
    if (root < 0 || root >= group_->size) {
      return absl::InvalidArgumentError(absl::StrCat("broadcast: no rank ", root));
    }
    group_->published[rank_] = data;
    if (absl::Status s = group_->Wait(rank_); !s.ok()) return s;
    if (rank_ != root) std::memcpy(data, group_->published[root], bytes);
    return group_->Wait(rank_);
  }

  absl::Status Barrier() override { return group_->Wait(rank_); }
  void Abort(const absl::Status& why) override { group_->Abort(why); }
  absl::Status status() const override { return group_->Status(); }

 private:
  static absl::Status HostFloat(CommDtype dtype, const char* what) {
    if (dtype == CommDtype::kFloat32) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the in-process communicator takes fp32 host buffers only"));
  }

  std::shared_ptr<ThreadGroup> group_;
  const int rank_;
  std::vector<float> sum_;
};

}  // namespace

std::unique_ptr<Communicator> MakeSingleRankCommunicator() {
  return std::make_unique<SingleRankCommunicator>();
}

std::vector<std::unique_ptr<Communicator>> MakeThreadCommunicators(
    int size, std::chrono::milliseconds timeout) {
  auto group = std::make_shared<ThreadGroup>(size, timeout);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < size; ++r) comms.push_back(std::make_unique<ThreadCommunicator>(group, r));
  return comms;
}

}  // namespace sluice
