// ReleaseFreeHeap gives a worker thread's freed, fragmented arena back to the OS.
#include "net/heap_release.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SLUICE_OWN_ALLOCATOR 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SLUICE_OWN_ALLOCATOR 1
#endif
#endif

namespace sluice {
namespace {

long ResidentKiB() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

TEST(HeapReleaseTest, ReturnsAWorkerArenasFreePages) {
#if defined(SLUICE_OWN_ALLOCATOR)
  GTEST_SKIP() << "a sanitizer's allocator replaces malloc's arenas";
#elif !defined(__GLIBC__)
  GTEST_SKIP() << "no malloc_trim in this C library";
#endif
  // 32 MiB in 16 KiB blocks from a worker thread (its own arena), all written; every
  // 64th block stays allocated, so the arena cannot just shrink from its top.
  constexpr int kBlocks = 2048;
  constexpr size_t kBlockBytes = 16 << 10;
  std::vector<void*> kept;
  std::thread([&] {
    std::vector<void*> blocks(kBlocks);
    for (void*& b : blocks) {
      b = std::malloc(kBlockBytes);
      std::memset(b, 1, kBlockBytes);
    }
    for (int i = 0; i < kBlocks; ++i) {
      if (i % 64 == 0) {
        kept.push_back(blocks[i]);
      } else {
        std::free(blocks[i]);
      }
    }
  }).join();
  const long before = ResidentKiB();
  EXPECT_TRUE(ReleaseFreeHeap());
  const long after = ResidentKiB();
  EXPECT_GT(before - after, 16 << 10)
      << "resident before " << before << " KiB, after " << after << " KiB";
  for (void* b : kept) std::free(b);
}

TEST(HeapReleaseTest, StopsWithoutWaitingOutItsInterval) {
  // The destructor wakes the thread; with an hour's interval a missed wake-up hangs here.
  { PeriodicHeapRelease release(std::chrono::hours(1)); }
  SUCCEED();
}

}  // namespace
}  // namespace sluice
