// config.json readers shared by the files that parse parts of it (config.cc, fp8.cc).
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/model/config.h"
#include "nlohmann/json.hpp"

namespace sluice::config_internal {

using nlohmann::json;

// Field readers that name the file and field on a type error.
class Fields {
 public:
  Fields(const json& j, const std::string& source) : j_(j), source_(source) {}

  absl::Status Error(const std::string& field, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": field \"", field, "\" ", what));
  }
  bool Has(const std::string& f) const { return j_.contains(f) && !j_[f].is_null(); }

  absl::StatusOr<int> Int(const std::string& f, std::optional<int> fallback = {}) const {
    if (!Has(f)) {
      if (fallback) return *fallback;
      return Error(f, "is missing");
    }
    if (!j_[f].is_number_integer()) return Error(f, "must be an integer");
    const int64_t v = j_[f].get<int64_t>();
    if (v <= 0 || v > (int64_t{1} << 30)) return Error(f, "must be a positive integer");
    return static_cast<int>(v);
  }
  absl::StatusOr<float> Float(const std::string& f, float fallback) const {
    if (!Has(f)) return fallback;
    if (!j_[f].is_number()) return Error(f, "must be a number");
    return j_[f].get<float>();
  }
  // A finite number > 0 (as a float: 1e300 is out of range, not infinity).
  absl::StatusOr<float> PositiveFloat(const std::string& f, float fallback) const {
    SLUICE_ASSIGN_OR_RETURN(float v, Float(f, fallback));
    if (!std::isfinite(v) || v <= 0.0f) return Error(f, "must be a finite number > 0");
    return v;
  }
  absl::StatusOr<bool> Bool(const std::string& f, bool fallback) const {
    if (!Has(f)) return fallback;
    if (!j_[f].is_boolean()) return Error(f, "must be true or false");
    return j_[f].get<bool>();
  }

 private:
  const json& j_;
  const std::string& source_;
};

// quantization_config (absent, FP8 in either published layout, or gpt-oss's mxfp4) into
// c.fp8; anything else is refused naming it. In fp8.cc.
absl::Status ParseQuantization(const json& j, const std::string& source, ModelConfig& c);

}  // namespace sluice::config_internal
