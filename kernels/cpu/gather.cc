#include "sluice/kernels/gather.h"

#include <algorithm>
#include <string>

namespace sluice::kernels::cpu {

Status GatherRows(float* out, const float* in, const int32_t* rows, int num_rows, int num_in_rows,
                  int width) {
  if (num_rows < 0 || width < 0) return Status::InvalidArgument("gather_rows: negative size");
  for (int i = 0; i < num_rows; ++i) {
    if (rows[i] < 0 || rows[i] >= num_in_rows) {
      return Status::InvalidArgument("gather_rows: row " + std::to_string(rows[i]) +
                                     " outside [0, " + std::to_string(num_in_rows) + ")");
    }
    const float* src = in + static_cast<int64_t>(rows[i]) * width;
    std::copy(src, src + width, out + static_cast<int64_t>(i) * width);
  }
  return Status::Ok();
}

}  // namespace sluice::kernels::cpu
