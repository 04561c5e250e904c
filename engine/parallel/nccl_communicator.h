// NCCL communicators: one rank per GPU, the ranks as threads of this process, created
// together by ncclCommInitAll over a list of devices.
//
// Threads in one process rather than a process per rank: the engine has one scheduler
// and one step loop, so the step's inputs (block tables included) are host memory that
// each rank's thread reads directly instead of receiving them over IPC every step, and a
// rank that fails is seen by the others at once (Abort). Processes would buy isolation
// the engine cannot use: a dead rank ends the replica either way.
//
// Collectives take device buffers (fp32 or bf16) and are enqueued on the caller's
// stream, so they capture into CUDA graphs; the caller's thread must have the rank's
// device current. Barrier synchronises through a one-element all-reduce on an internal
// stream. Abort aborts every communicator of the group (ncclCommAbort), ending their
// pending collectives. libnccl.so.2 (or $SLUICE_NCCL_LIBRARY) is opened at the first
// MakeNcclCommunicators: a binary built with NCCL's headers starts without NCCL and
// needs it only for a group.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/parallel/communicator.h"

namespace sluice {

// Whether this build has the NCCL communicator (else MakeNcclCommunicators returns
// Unimplemented).
bool NcclBuilt();

// One communicator per entry of `devices` (CUDA device ordinals), rank i on devices[i].
// Errors: no NCCL in this build or on this machine, fewer GPUs than asked for, NCCL's own
// (by name).
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> MakeNcclCommunicators(
    const std::vector<int>& devices);

}  // namespace sluice
