#include "sluice/kernels/embedding.h"

#include <algorithm>
#include <string>

namespace sluice::kernels::cpu {

Status Embedding(float* out, const int32_t* ids, const float* table, int num_tokens, int vocab,
                 int hidden) {
  for (int t = 0; t < num_tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      return Status::InvalidArgument("embedding: token id " + std::to_string(ids[t]) +
                                     " at index " + std::to_string(t) + " is outside [0, " +
                                     std::to_string(vocab) + ")");
    }
    const float* row = table + int64_t{ids[t]} * hidden;
    std::copy(row, row + hidden, out + int64_t{t} * hidden);
  }
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
