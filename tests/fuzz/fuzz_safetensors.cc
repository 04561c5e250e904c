// A .safetensors file's bytes through SafetensorsFile::Open: the header is validated
// before any tensor is touched, so every tensor it accepts lies inside the file, is
// sized to its shape and dtype, and can be read.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/model/safetensors.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/sluice-fuzz-" + std::to_string(getpid()) + ".safetensors";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  auto file = sluice::SafetensorsFile::Open(path);
  if (!file.ok()) {
    FUZZ_CHECK(!file.status().message().empty());
    return 0;
  }
  for (const sluice::TensorView& t : (*file)->tensors()) {
    FUZZ_CHECK(t.data != nullptr || t.num_bytes == 0);
    FUZZ_CHECK(t.num_bytes == static_cast<size_t>(t.NumElements()) * sluice::DTypeSize(t.dtype));
    FUZZ_CHECK(t.num_bytes <= size);
    if (t.num_bytes <= (1 << 16)) {
      FUZZ_CHECK(t.ToFloat().size() == static_cast<size_t>(t.NumElements()));
    }
  }
  return 0;
}
