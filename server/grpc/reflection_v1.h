// grpc.reflection.v1.ServerReflection: lists the server's services and sends the
// descriptors of the files that define them, from the process's generated descriptor
// pool. grpc++ 1.51's plugin speaks only v1alpha; current clients (grpcurl, Postman)
// ask v1 first.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/impl/service_type.h>

namespace sluice::grpcfront {

// The service, answering for `services` (fully qualified names).
std::unique_ptr<grpc::Service> MakeReflectionV1(std::vector<std::string> services);

}  // namespace sluice::grpcfront
