// Handing freed heap memory back to the OS. glibc's malloc keeps what each thread frees in
// that thread's arena for reuse: after a burst of connections that is megabytes the process
// no longer uses but still holds, and a container's memory limit counts them all the same.
// `sluice serve` and `sluice-gateway` both release them on a timer.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace sluice {

// Returns the free pages of every malloc arena to the OS; true when any were returned.
// Returns false, doing nothing, where the C library has no malloc_trim.
bool ReleaseFreeHeap();

// Calls ReleaseFreeHeap every `interval` on a thread of its own, until destroyed.
// Thread safety: construct and destroy on one thread; the destructor returns at once.
class PeriodicHeapRelease {
 public:
  explicit PeriodicHeapRelease(std::chrono::milliseconds interval);
  ~PeriodicHeapRelease();
  PeriodicHeapRelease(const PeriodicHeapRelease&) = delete;
  PeriodicHeapRelease& operator=(const PeriodicHeapRelease&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace sluice
