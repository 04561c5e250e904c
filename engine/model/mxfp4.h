// MXFP4 (OCP Microscaling, FP4 E2M1 elements in blocks of 32 with one E8M0 scale), as
// gpt-oss's published checkpoints store their experts: `*_blocks` [..., groups, 16]
// bytes, two elements a byte (the low nibble first), and `*_scales` [..., groups].
#pragma once

#include <cstdint>
#include <vector>

namespace sluice {

// Element value of an E2M1 code (bit 3 sign, bits 2-1 exponent with bias 1, bit 0
// mantissa; exponent 0 is subnormal): 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives.
float E2m1Value(uint8_t code);

// `rows` rows of `cols` values (cols a multiple of 32): blocks [rows, cols / 32, 16],
// scales [rows, cols / 32]; element j of group g is E2m1Value(code) * 2^(scale - 127)
// (scale 255 is NaN).
std::vector<float> DequantizeMxfp4(const uint8_t* blocks, const uint8_t* scales, int64_t rows,
                                   int64_t cols);

}  // namespace sluice
