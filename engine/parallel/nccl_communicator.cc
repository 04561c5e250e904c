#include "engine/parallel/nccl_communicator.h"

#include "absl/strings/str_cat.h"

#if SLUICE_HAVE_NCCL
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <type_traits>
#endif

namespace sluice {

#if !SLUICE_HAVE_NCCL

bool NcclBuilt() { return false; }

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclCommunicators(
    const std::vector<int>& devices) {
  return absl::UnimplementedError(absl::StrCat(
      "NCCL: this build has no NCCL (", devices.size(),
      " GPU ranks asked for); build where the CUDA toolkit or PyPI's nvidia-nccl provides it"));
}

#else

bool NcclBuilt() { return true; }

namespace {

// NCCL's entry points, from libnccl.so.2 opened at the first use: the binaries do not
// depend on NCCL being installed (the CPU backend and one-GPU engines never need it).
struct NcclApi {
  decltype(&ncclCommInitAll) CommInitAll;
  decltype(&ncclAllReduce) AllReduce;
  decltype(&ncclAllGather) AllGather;
  decltype(&ncclBroadcast) Broadcast;
  decltype(&ncclCommAbort) CommAbort;
  decltype(&ncclCommDestroy) CommDestroy;
  decltype(&ncclCommGetAsyncError) CommGetAsyncError;
  decltype(&ncclGetErrorString) GetErrorString;
};

// $SLUICE_NCCL_LIBRARY, else libnccl.so.2 on the loader's path.
absl::StatusOr<const NcclApi*> Api() {
  static const absl::StatusOr<NcclApi> api = []() -> absl::StatusOr<NcclApi> {
    const char* env = std::getenv("SLUICE_NCCL_LIBRARY");
    const std::string path = env != nullptr && *env != '\0' ? env : "libnccl.so.2";
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("NCCL: cannot load ", path, " (", dlerror(),
                       "); install NCCL or set SLUICE_NCCL_LIBRARY"));
    }
    NcclApi a;
    bool missing = false;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      missing = missing || fn == nullptr;
    };
    sym(a.CommInitAll, "ncclCommInitAll");
    sym(a.AllReduce, "ncclAllReduce");
    sym(a.AllGather, "ncclAllGather");
    sym(a.Broadcast, "ncclBroadcast");
    sym(a.CommAbort, "ncclCommAbort");
    sym(a.CommDestroy, "ncclCommDestroy");
    sym(a.CommGetAsyncError, "ncclCommGetAsyncError");
    sym(a.GetErrorString, "ncclGetErrorString");
    if (missing) {
      return absl::FailedPreconditionError(absl::StrCat("NCCL: ", path, " lacks entry points"));
    }
    return a;
  }();
  if (!api.ok()) return api.status();
  return &*api;
}

// REQUIRES: Api() loaded.
absl::Status Nccl(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("NCCL ", what, ": ", (*Api())->GetErrorString(r)));
}

absl::Status Cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("CUDA ", what, ": ", cudaGetErrorString(e)));
}

ncclDataType_t NcclType(CommDtype d) {
  return d == CommDtype::kFloat32 ? ncclFloat32 : ncclBfloat16;
}

// What the ranks share: their communicators (for Abort) and the abort status.
struct NcclGroup {
  std::vector<ncclComm_t> comms;
  std::mutex mu;
  absl::Status aborted;

  ~NcclGroup() {
    if (!aborted.ok()) return;  // ncclCommAbort freed them
    for (ncclComm_t c : comms) (*Api())->CommDestroy(c);
  }
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(const NcclApi* nccl, std::shared_ptr<NcclGroup> group, int rank, int device)
      : nccl_(nccl), group_(std::move(group)), rank_(rank), device_(device) {}
  ~NcclCommunicator() override {
    cudaSetDevice(device_);
    if (scratch_ != nullptr) cudaFree(scratch_);
    if (barrier_stream_ != nullptr) cudaStreamDestroy(barrier_stream_);
  }

  absl::Status Init() {
    if (absl::Status s = Cuda(cudaSetDevice(device_), "selecting the device"); !s.ok()) return s;
    if (absl::Status s = Cuda(cudaMalloc(&scratch_, sizeof(float)), "barrier scratch"); !s.ok()) {
      return s;
    }
    return Cuda(cudaStreamCreateWithFlags(&barrier_stream_, cudaStreamNonBlocking),
                "barrier stream");
  }

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(group_->comms.size()); }

  absl::Status AllReduceSum(void* data, size_t count, CommDtype dtype,
                            cudaStream_t stream) override {
    if (absl::Status s = status(); !s.ok()) return s;
    return Checked(nccl_->AllReduce(data, data, count, NcclType(dtype), ncclSum, Comm(), stream),
                   "all-reduce");
  }
  absl::Status AllGather(const void* send, void* recv, size_t count, CommDtype dtype,
                         cudaStream_t stream) override {
    if (absl::Status s = status(); !s.ok()) return s;
    return Checked(nccl_->AllGather(send, recv, count, NcclType(dtype), Comm(), stream),
                   "all-gather");
  }
  absl::Status Broadcast(void* data, size_t bytes, int root, cudaStream_t stream) override {
    if (absl::Status s = status(); !s.ok()) return s;
    return Checked(nccl_->Broadcast(data, data, bytes, ncclUint8, root, Comm(), stream),
                   "broadcast");
  }
  absl::Status Barrier() override {
    if (absl::Status s = status(); !s.ok()) return s;
    if (absl::Status s = Cuda(cudaSetDevice(device_), "selecting the device"); !s.ok()) return s;
    if (absl::Status s = Checked(
            nccl_->AllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, Comm(), barrier_stream_),
            "barrier");
        !s.ok()) {
      return s;
    }
    return Cuda(cudaStreamSynchronize(barrier_stream_), "barrier");
  }

  void Abort(const absl::Status& why) override {
    std::lock_guard<std::mutex> lock(group_->mu);
    if (!group_->aborted.ok()) return;
    group_->aborted = why.ok() ? absl::AbortedError("NCCL: aborted") : why;
    for (ncclComm_t c : group_->comms) nccl_->CommAbort(c);
  }

  absl::Status status() const override {
    std::lock_guard<std::mutex> lock(group_->mu);
    if (!group_->aborted.ok()) return group_->aborted;
    ncclResult_t async = ncclSuccess;
    nccl_->CommGetAsyncError(group_->comms[rank_], &async);
    return Nccl(async, "asynchronous error");
  }

 private:
  ncclComm_t Comm() const { return group_->comms[rank_]; }
  absl::Status Checked(ncclResult_t r, const char* what) { return Nccl(r, what); }

  const NcclApi* nccl_;
  std::shared_ptr<NcclGroup> group_;
  const int rank_, device_;
  float* scratch_ = nullptr;
  cudaStream_t barrier_stream_ = nullptr;
};

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclCommunicators(
    const std::vector<int>& devices) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  for (int d : devices) {
    if (d < 0 || d >= count) {
      return absl::FailedPreconditionError(
          absl::StrCat("NCCL: ", devices.size(), " ranks asked for device ", d,
                       ", and this machine has ", count, " GPU(s)"));
    }
  }
  if (devices.empty()) return absl::InvalidArgumentError("NCCL: no devices");
  absl::StatusOr<const NcclApi*> nccl = Api();
  if (!nccl.ok()) return nccl.status();
  auto group = std::make_shared<NcclGroup>();
  group->comms.resize(devices.size());
  if (absl::Status s = Nccl((*nccl)->CommInitAll(group->comms.data(),
                                                 static_cast<int>(devices.size()), devices.data()),
                            "init");
      !s.ok()) {
    group->comms.clear();
    return s;
  }
  std::vector<std::unique_ptr<Communicator>> out;
  for (size_t r = 0; r < devices.size(); ++r) {
    auto c = std::make_unique<NcclCommunicator>(*nccl, group, static_cast<int>(r), devices[r]);
    if (absl::Status s = c->Init(); !s.ok()) return s;
    out.push_back(std::move(c));
  }
  return out;
}

#endif

}  // namespace sluice
