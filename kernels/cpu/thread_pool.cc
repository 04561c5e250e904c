#include "sluice/kernels/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace sluice::kernels {
namespace {

inline void Pause() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// How long a worker spins for the next region before it sleeps: longer than the gap
// between two regions of one step, shorter than a wake-up is worth between steps.
constexpr auto kSpin = std::chrono::microseconds(100);

}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < std::max(threads, 1); ++i) workers_.emplace_back([this] { Worker(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    epoch_.fetch_add(1);
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::Work() {
  for (;;) {
    const int64_t begin = next_.fetch_add(grain_, std::memory_order_relaxed);
    if (begin >= n_) return;
    (*fn_)(begin, std::min(n_, begin + grain_));
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  grain = std::max<int64_t>(grain, 1);
  if (n <= 0) return;
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  n_ = n;
  grain_ = grain;
  fn_ = &fn;
  next_.store(0, std::memory_order_relaxed);
  const uint64_t e = epoch_.load(std::memory_order_relaxed) + 1;
  open_.store(e);  // (seq_cst, as every access to open_ and active_: see Worker)
  {
    // Under the lock, so that a worker going to sleep sees the new epoch or is woken.
    std::lock_guard<std::mutex> lock(mu_);
    epoch_.store(e, std::memory_order_release);
  }
  if (sleeping_.load() > 0) wake_.notify_all();
  // Closes the region and waits for the workers inside it, also when fn throws here.
  struct Close {
    ThreadPool* pool;
    ~Close() {
      pool->open_.store(0);
      // Workers inside run ranges (short), or were descheduled while joining: yield
      // to them rather than spin out a time slice.
      for (int i = 1; pool->active_.load() > 0; ++i) {
        if (i % 256 == 0) {
          std::this_thread::yield();
        } else {
          Pause();
        }
      }
      pool->fn_ = nullptr;
    }
  } close{this};
  Work();
}

void ThreadPool::Worker() {
  uint64_t seen = 0;
  for (;;) {
    uint64_t e = epoch_.load(std::memory_order_acquire);
    const auto give_up = std::chrono::steady_clock::now() + kSpin;
    for (int i = 1; e == seen; ++i) {
      Pause();
      e = epoch_.load(std::memory_order_acquire);
      if (i % 64 == 0 && std::chrono::steady_clock::now() > give_up) break;
    }
    if (e == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleeping_.fetch_add(1);
      wake_.wait(lock, [&] { return epoch_.load() != seen; });
      sleeping_.fetch_sub(1);
      e = epoch_.load();
    }
    seen = e;
    if (stop_.load()) return;
    // Join, then check the region is still open: with both seq_cst, either the caller's
    // wait sees this worker, or this worker sees the region closed (and touches nothing).
    if (open_.load() != e) continue;  // closed already: nothing to join
    active_.fetch_add(1);
    if (open_.load() == e) Work();
    active_.fetch_sub(1);
  }
}

namespace {

// The CPU quota of this process's cgroup in CPUs (v2 cpu.max, else v1 cfs quota), or 0.
double CgroupCpus() {
  std::ifstream v2("/sys/fs/cgroup/cpu.max");
  std::string quota;
  double period = 0;
  if (v2 >> quota >> period) {
    if (quota == "max" || period <= 0) return 0;
    char* end = nullptr;
    const double q = std::strtod(quota.c_str(), &end);
    return end != quota.c_str() && q > 0 ? q / period : 0;
  }
  std::ifstream q1("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
      p1("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  double q = 0;
  if (q1 >> q && p1 >> period && q > 0 && period > 0) return q / period;
  return 0;
}

}  // namespace

int DefaultCpuThreads() {
  int cpus = 1;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    cpus = std::max(1, CPU_COUNT(&set));
  } else {
    cpus = std::max(1u, std::thread::hardware_concurrency());  // more CPUs than a cpu_set_t
  }
  if (const double quota = CgroupCpus(); quota > 0) {
    cpus = std::min(cpus, std::max(1, static_cast<int>(std::ceil(quota))));
  }
  return cpus;
}

}  // namespace sluice::kernels
