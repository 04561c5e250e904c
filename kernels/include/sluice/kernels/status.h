// Framework-free status for kernel entry points. The engine turns it into absl::Status
// at its boundary; kernels/ itself depends on nothing but the standard library and CUDA.
#pragma once

#include <string>
#include <utility>

namespace sluice::kernels {

enum class StatusCode { kOk = 0, kInvalidArgument, kUnsupported, kCudaError };

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return Status(StatusCode::kInvalidArgument, std::move(m));
  }
  static Status Unsupported(std::string m) {
    return Status(StatusCode::kUnsupported, std::move(m));
  }
  static Status CudaError(std::string m) { return Status(StatusCode::kCudaError, std::move(m)); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

}  // namespace sluice::kernels
