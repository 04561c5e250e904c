#include "net/heap_release.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace sluice {

bool ReleaseFreeHeap() {
#if defined(__GLIBC__)
  // NOTE: malloc_trim(0) walks every arena and madvises the whole free pages in it away,
  // not only the top of the main heap: a few milliseconds at most for a heap of this size.
  return malloc_trim(0) == 1;
#else
  return false;
#endif
}

PeriodicHeapRelease::PeriodicHeapRelease(std::chrono::milliseconds interval)
    : thread_([this, interval] {
        std::unique_lock<std::mutex> lock(mu_);
        while (!wake_.wait_for(lock, interval, [this] { return stop_; })) {
          lock.unlock();
          ReleaseFreeHeap();
          lock.lock();
        }
      }) {}

PeriodicHeapRelease::~PeriodicHeapRelease() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

}  // namespace sluice
