// Collectives across the ranks of one tensor-parallel group: all-reduce (sum), all-gather,
// broadcast and barrier. Three implementations:
//   - a single rank, where every collective is the identity (tp = 1);
//   - ranks as threads of this process over shared host buffers (the CPU backend): sums
//     are taken in rank order 0, 1, ..., N-1, so every rank holds the same bits and a run
//     repeats exactly;
//   - NCCL, one rank per GPU (nccl_communicator.h, where the build found NCCL).
// A rank that fails mid-step calls Abort: every rank waiting in, or later entering, a
// collective of the group gets the abort's status instead of waiting for ever, and a
// rank that waits longer than the group's timeout aborts the group itself (a hung peer).
// Once aborted, a group stays aborted: its engine is dead, as with a wedged device.
//
// Thread safety: each rank's Communicator is used by one thread at a time; the ranks of a
// group run concurrently, and every rank must call the same collectives in the same order.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "sluice/kernels/stream.h"

namespace sluice {

enum class CommDtype { kFloat32, kBfloat16 };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[0, count) := the sum over ranks of each rank's data[0, count), in place.
  virtual absl::Status AllReduceSum(void* data, size_t count, CommDtype dtype,
                                    cudaStream_t stream = nullptr) = 0;
  // recv[r * count, (r + 1) * count) := rank r's send[0, count), on every rank.
  virtual absl::Status AllGather(const void* send, void* recv, size_t count, CommDtype dtype,
                                 cudaStream_t stream = nullptr) = 0;
  // data[0, bytes) := root's data[0, bytes), on every rank.
  virtual absl::Status Broadcast(void* data, size_t bytes, int root,
                                 cudaStream_t stream = nullptr) = 0;
  // Returns once every rank has entered it (or with the group's abort status).
  virtual absl::Status Barrier() = 0;
  // Fails every pending and later collective of the group with `why` (the first abort's
  // `why` stands).
  virtual void Abort(const absl::Status& why) = 0;
  // The group's abort status: OK while no rank has aborted it or timed out.
  virtual absl::Status status() const = 0;
};

// tp = 1: every collective returns at once (AllGather copies send to recv).
std::unique_ptr<Communicator> MakeSingleRankCommunicator();

// `size` communicators over one in-process group, rank i for thread i. Host memory,
// CommDtype::kFloat32 only. A rank that waits at a collective longer than `timeout`
// aborts the group with DeadlineExceeded.
std::vector<std::unique_ptr<Communicator>> MakeThreadCommunicators(
    int size, std::chrono::milliseconds timeout = std::chrono::seconds(120));

}  // namespace sluice
