// Read-only, memory-mapped safetensors checkpoints, single file or sharded through
// model.safetensors.index.json. Headers are validated before any tensor is read.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace sluice {

// U8: packed data (MXFP4 blocks and scales); F8_E4M3: FP8 weights (their scales apart).
enum class DType { kBF16, kF16, kF32, kU8, kF8E4M3 };

const char* DTypeName(DType dtype);
int DTypeSize(DType dtype);

// A view of one tensor's bytes inside a mapped file. Valid while its file is open.
struct TensorView {
  std::string name;
  std::string file;  // the file it lives in, for error messages
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t num_bytes = 0;

  int64_t NumElements() const;
  // Converts the tensor to fp32 (exact for BF16, F16 and F8_E4M3, unscaled; U8 bytes as
  // their values).
  std::vector<float> ToFloat() const;
};

// One mapped .safetensors file.
class SafetensorsFile {
 public:
  // Maps the file and validates its header: JSON well-formed, every dtype one of
  // BF16/F16/F32/U8/F8_E4M3, offsets inside the data section, non-overlapping, sized to the shape.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }

 private:
  SafetensorsFile() = default;
  absl::Status ParseHeader();

  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<TensorView> tensors_;
};

// All tensors of a checkpoint directory, by name.
class Checkpoint {
 public:
  // Opens DIR/model.safetensors.index.json with its shards, else DIR/model.safetensors.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> OpenDir(const std::string& dir);

  // The named tensor, or NotFound naming the tensor and the checkpoint.
  absl::StatusOr<const TensorView*> Get(const std::string& name) const;
  bool Has(const std::string& name) const { return index_.contains(name); }
  size_t num_tensors() const { return index_.size(); }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  absl::flat_hash_map<std::string, const TensorView*> index_;
};

}  // namespace sluice
