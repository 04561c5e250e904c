// Hopper warpgroup MMA (wgmma, sm_90a) for the attention kernel's wgmma configuration:
// m64n64k16 with A (16 rows × 16 k per warp, the mma.sync A-fragment layout) from
// registers and B from shared memory through a matrix descriptor, fp32 accumulators in
// the m16n8 C-fragment layout per n8 block. Shared tiles use the 128-byte swizzle: rows
// of 64 bf16 (128 bytes), 16-byte chunk c of row r stored at chunk c ^ (r % 8), atoms of
// 8 rows (1024 bytes, 1024-byte aligned).
// On other targets the functions trap; the host never selects them there.
#pragma once

#include <cstdint>

#include "mma.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SLUICE_HAVE_WGMMA 1
#else
#define SLUICE_HAVE_WGMMA 0
#endif

namespace sluice::kernels::cuda {

// Descriptor of a 128-byte-swizzled shared-memory operand. lbo: byte stride between
// 64-element blocks along the contiguous dimension (MN-major operands only); sbo: byte
// stride between 8-row groups. NOTE: the attention kernel's operands are one 64-element
// block wide, so lbo is never used there; it passes sbo for both.
__device__ __forceinline__ uint64_t WgmmaDesc(const void* smem, uint32_t lbo, uint32_t sbo) {
  const uint64_t addr = SmemAddr(smem);
  return ((addr & 0x3ffffu) >> 4) | (uint64_t{(lbo >> 4) & 0x3fffu} << 16) |
         (uint64_t{(sbo >> 4) & 0x3fffu} << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void WgmmaFence() {
#if SLUICE_HAVE_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void WgmmaCommit() {
#if SLUICE_HAVE_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void WgmmaWaitAll() {
#if SLUICE_HAVE_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}

// Orders the compiler's uses of an accumulator register around the asynchronous MMA.
__device__ __forceinline__ void FenceOperand(float& r) { asm volatile("" : "+f"(r)::"memory"); }

// Makes this thread's generic-proxy shared-memory writes (cp.async included) visible
// to the tensor cores' async proxy; follow with a barrier.
__device__ __forceinline__ void FenceProxyAsync() {
#if SLUICE_HAVE_WGMMA
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// d[0..31] (+)= a · B, B 16×64 from desc_b; kTransB: B stored MN-major (rows of k).
template <int kTransB>
__device__ __forceinline__ void WgmmaM64N64K16(float* d, const uint32_t (&a)[4], uint64_t desc_b,
                                               int scale_d);

template <>
__device__ __forceinline__ void WgmmaM64N64K16<0>(float* d, const uint32_t (&a)[4], uint64_t desc_b,
                                                  int scale_d) {
#if SLUICE_HAVE_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
#else
  __trap();
#endif
}

template <>
__device__ __forceinline__ void WgmmaM64N64K16<1>(float* d, const uint32_t (&a)[4], uint64_t desc_b,
                                                  int scale_d) {
#if SLUICE_HAVE_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "
      "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]),
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]),
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d));
#else
  __trap();
#endif
}

}  // namespace sluice::kernels::cuda
