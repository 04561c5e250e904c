// The CPU backend's intra-op threads: a fixed set of workers that a kernel splits its
// work over (GEMM columns, attention's (sequence, KV head) tiles). After a parallel
// region the workers spin for up to 100 us (pause, no system call), then sleep on a
// condition variable, so that an idle server costs no CPU and a busy step no wake-ups.
//
// Thread safety: one caller at a time (the engine's thread, or a tensor-parallel rank's,
// each with its own pool); ParallelFor is not reentrant.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sluice::kernels {

class ThreadPool {
 public:
  // `threads` >= 1 threads in all: the caller and threads - 1 workers.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over disjoint ranges that cover [0, n), `grain` indices each
  // (the last may be shorter), handed out to the threads as they come free, and returns
  // when every call has returned. The caller runs ranges too, all of them if no worker
  // comes (a busy machine): the caller waits only for ranges in progress. fn must not
  // throw on a worker (std::terminate); on the caller, the region is closed first.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void Work();
  void Worker();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  // A region is open while its index is handed out. A worker joins it (active_) only
  // while it is open, so that the caller never waits for a worker that is asleep or
  // descheduled: it does their share itself and waits only for ranges in progress.
  std::atomic<uint64_t> epoch_{0};  // the latest region
  std::atomic<uint64_t> open_{0};   // the open region's epoch, 0 when none
  std::atomic<int> active_{0};      // workers inside the open region
  std::atomic<int> sleeping_{0};
  std::atomic<int64_t> next_{0};  // the next index to hand out
  std::atomic<bool> stop_{false};
  // The current region (written before it opens).
  int64_t n_ = 0, grain_ = 1;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
};

// Threads the CPU backend uses by default: the CPUs this process may run on (its
// affinity mask), capped by its cgroup's CPU quota (a container's limit, cgroup v2 or
// v1), at least 1.
int DefaultCpuThreads();

}  // namespace sluice::kernels
