// The gRPC front: sluice.v1.Generation (streaming Generate, Tokenize, Detokenize,
// GetModelInfo) on the callback API (no thread per stream), grpc.health.v1.Health and
// server reflection, over the same engine and metrics as the HTTP front.
// Overload is RESOURCE_EXHAUSTED with a google.rpc.RetryInfo detail, draining and loading
// UNAVAILABLE, bad input INVALID_ARGUMENT naming the field; a cancelled call (or one past
// its deadline) aborts its request, which frees its blocks.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "server/openai/server_state.h"

namespace sluice::grpcfront {

class GrpcServer {
 public:
  explicit GrpcServer(ServerState* state);
  ~GrpcServer();

  // Listens on host:port (port 0 picks one).
  absl::Status Start(const std::string& host, int port);
  int port() const;
  // Health: SERVING once the model is loaded, NOT_SERVING while loading or draining.
  void SetServing(bool serving);
  // Ends every call and stops, waiting up to `deadline_s` for calls in flight.
  void Shutdown(double deadline_s);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::grpcfront
