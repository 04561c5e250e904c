#include "engine/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "sluice/kernels/dtype.h"

namespace sluice {
namespace {

using nlohmann::json;

// A header larger than this is refused rather than parsed (the format caps it at 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::StatusOr<DType> ParseDType(const std::string& s) {
  if (s == "BF16") return DType::kBF16;
  if (s == "F16") return DType::kF16;
  if (s == "F32") return DType::kF32;
  if (s == "U8") return DType::kU8;
  if (s == "F8_E4M3") return DType::kF8E4M3;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype ", s, " (supported: BF16, F16, F32, U8, F8_E4M3)"));
}

absl::StatusOr<TensorView> ParseEntry(const std::string& name, const json& entry,
                                      uint64_t data_size) {
  if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() ||
      !entry.contains("shape") || !entry["shape"].is_array() || !entry.contains("data_offsets") ||
      !entry["data_offsets"].is_array() || entry["data_offsets"].size() != 2) {
    return absl::InvalidArgumentError("needs string dtype, array shape, two data_offsets");
  }
  TensorView t;
  t.name = name;
  auto dtype = ParseDType(entry["dtype"].get<std::string>());
  if (!dtype.ok()) return dtype.status();
  t.dtype = *dtype;
  int64_t elements = 1;
  for (const json& d : entry["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      return absl::InvalidArgumentError("shape entries must be non-negative integers");
    }
    t.shape.push_back(d.get<int64_t>());
    if (t.shape.back() > 0 && elements > (int64_t{1} << 40) / t.shape.back()) {
      return absl::InvalidArgumentError("shape is implausibly large");
    }
    elements *= t.shape.back();
  }
  const json& off = entry["data_offsets"];
  if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
    return absl::InvalidArgumentError("data_offsets must be non-negative integers");
  }
  const uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  if (begin > end || end > data_size) {
    return absl::OutOfRangeError(absl::StrCat("data_offsets [", begin, ", ", end,
                                              ") fall outside the data section of ", data_size,
                                              " bytes"));
  }
  if (end - begin != static_cast<uint64_t>(elements) * DTypeSize(t.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("holds ", end - begin, " bytes but shape and ",
                                                   DTypeName(t.dtype), " need ",
                                                   elements * DTypeSize(t.dtype)));
  }
  t.num_bytes = end - begin;
  t.data = reinterpret_cast<const uint8_t*>(begin);  // rebased onto the mapping by the caller
  return t;
}

}  // namespace

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kF32:
      return "F32";
    case DType::kU8:
      return "U8";
    case DType::kF8E4M3:
      return "F8_E4M3";
  }
  return "?";
}

int DTypeSize(DType dtype) {
  if (dtype == DType::kF32) return 4;
  return dtype == DType::kU8 || dtype == DType::kF8E4M3 ? 1 : 2;
}

int64_t TensorView::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<float> TensorView::ToFloat() const {
  const int64_t n = NumElements();
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(&out[i], data + 4 * i, 4);
      continue;
    }
    if (dtype == DType::kU8) {
      out[i] = static_cast<float>(data[i]);
      continue;
    }
    if (dtype == DType::kF8E4M3) {
      out[i] = kernels::Fp8E4m3ToFloat(data[i]);
      continue;
    }
    uint16_t bits;
    std::memcpy(&bits, data + 2 * i, 2);
    out[i] = dtype == DType::kBF16 ? kernels::Bf16ToFloat(kernels::bf16{bits})
                                   : kernels::HalfBitsToFloat(bits);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": cannot stat"));
  }
  file->map_size_ = static_cast<size_t>(st.st_size);
  if (file->map_size_ > 0) {
    void* m = ::mmap(nullptr, file->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
    }
    file->map_ = static_cast<const uint8_t*>(m);
  }
  ::close(fd);
  if (absl::Status s = file->ParseHeader(); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

absl::Status SafetensorsFile::ParseHeader() {
  if (map_size_ < 8) {
    return absl::InvalidArgumentError(
        absl::StrCat("truncated: ", map_size_, " bytes, too short for the 8-byte header size"));
  }
  uint64_t header_size = 0;
  std::memcpy(&header_size, map_, 8);  // little-endian on every supported host
  if (header_size > kMaxHeaderBytes || header_size > map_size_ - 8) {
    return absl::InvalidArgumentError(absl::StrCat("truncated or corrupt: header claims ",
                                                   header_size, " bytes but the file has ",
                                                   map_size_ - 8, " after the size field"));
  }
  const char* text = reinterpret_cast<const char*>(map_ + 8);
  json header = json::parse(text, text + header_size, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::InvalidArgumentError("header is not a JSON object");
  }
  const uint64_t data_size = map_size_ - 8 - header_size;
  const uint8_t* data_base = map_ + 8 + header_size;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    auto t = ParseEntry(it.key(), it.value(), data_size);
    if (!t.ok()) {
      return absl::Status(t.status().code(),
                          absl::StrCat("tensor ", it.key(), ": ", t.status().message()));
    }
    t->file = path_;
    t->data = data_base + reinterpret_cast<uintptr_t>(t->data);
    tensors_.push_back(std::move(*t));
  }
  // Byte ranges must not overlap.
  std::vector<const TensorView*> by_offset;
  for (const TensorView& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorView* a, const TensorView* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorView* prev = by_offset[i - 1];
    if (prev->data + prev->num_bytes > by_offset[i]->data) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensors ", prev->name, " and ", by_offset[i]->name, " overlap"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::OpenDir(const std::string& dir) {
  namespace fs = std::filesystem;
  auto ckpt = std::make_unique<Checkpoint>();
  ckpt->dir_ = dir;
  std::vector<std::string> shard_names;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    std::ifstream in(index_path);
    json index = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (index.is_discarded() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": not JSON with a weight_map object"));
    }
    std::set<std::string> unique;
    for (auto& [name, shard] : index["weight_map"].items()) {
      if (!shard.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": weight_map[", name, "] is not a file name"));
      }
      unique.insert(shard.get<std::string>());
    }
    shard_names.assign(unique.begin(), unique.end());
  } else if (fs::exists(fs::path(dir) / "model.safetensors")) {
    shard_names.push_back("model.safetensors");
  } else {
    return absl::NotFoundError(
        absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json"));
  }
  for (const std::string& shard : shard_names) {
    if (shard.find('/') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("shard name ", shard, " is not a file name"));
    }
    auto file = SafetensorsFile::Open((fs::path(dir) / shard).string());
    if (!file.ok()) return file.status();
    ckpt->files_.push_back(std::move(*file));
  }
  for (const auto& file : ckpt->files_) {
    for (const TensorView& t : file->tensors()) {
      if (!ckpt->index_.emplace(t.name, &t).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(dir, ": tensor ", t.name, " appears in more than one shard"));
      }
    }
  }
  return ckpt;
}

absl::StatusOr<const TensorView*> Checkpoint::Get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat(dir_, ": missing tensor ", name));
  }
  return it->second;
}

}  // namespace sluice
