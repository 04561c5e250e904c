// The paged attention variants that serving never plans with, kept so that bench/kernels
// can compare them with the defaults (kernels/cuda/NOTES.md has what each one measured):
// every decode variant but d7 at both head dims, and every prefill variant at head_dim
// 128 but v2 and v5. Not part of sluice_kernels_cuda: a binary that compiles this file
// in (kernel_bench) gets them registered before main, and PlanPagedAttention then
// accepts their ids.
#include <iterator>

#include "paged_attention_launch.cuh"

namespace sluice::kernels::cuda {
namespace {

constexpr AttentionVariant kBenchVariants[] = {
    DecodeVariant<64, 0>(),   DecodeVariant<64, 1>(),   DecodeVariant<64, 2>(),
    DecodeVariant<64, 3>(),   DecodeVariant<64, 4>(),   DecodeVariant<64, 5>(),
    DecodeVariant<64, 6>(),   DecodeVariant<128, 0>(),  DecodeVariant<128, 1>(),
    DecodeVariant<128, 2>(),  DecodeVariant<128, 3>(),  DecodeVariant<128, 4>(),
    DecodeVariant<128, 5>(),  DecodeVariant<128, 6>(),  PrefillVariant<128, 0>(),
    PrefillVariant<128, 1>(), PrefillVariant<128, 3>(), PrefillVariant<128, 4>(),
    PrefillVariant<128, 6>(), PrefillVariant<128, 7>(), PrefillVariant<128, 8>(),
    PrefillVariant<128, 9>(),
};

[[maybe_unused]] const bool kRegistered =
    RegisterAttentionVariants(kBenchVariants, static_cast<int>(std::size(kBenchVariants)));

}  // namespace
}  // namespace sluice::kernels::cuda
