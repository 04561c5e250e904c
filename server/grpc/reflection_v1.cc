#include "server/grpc/reflection_v1.h"

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace sluice::grpcfront {
namespace {

namespace rv1 = ::grpc::reflection::v1;
using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptor;

class ReflectionV1 final : public rv1::ServerReflection::Service {
 public:
  explicit ReflectionV1(std::vector<std::string> services) : services_(std::move(services)) {
    // The health descriptors live in a file nothing else refers to: naming one keeps the
    // linker from dropping it (and with it their place in the pool).
    (void)::grpc::health::v1::HealthCheckRequest::descriptor();
  }

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<rv1::ServerReflectionResponse, rv1::ServerReflectionRequest>* stream)
      override {
    absl::flat_hash_set<std::string> sent;  // files this stream has had
    rv1::ServerReflectionRequest req;
    while (stream->Read(&req)) {
      if (!stream->Write(Answer(req, sent))) break;
    }
    return grpc::Status::OK;
  }

 private:
  rv1::ServerReflectionResponse Answer(const rv1::ServerReflectionRequest& req,
                                       absl::flat_hash_set<std::string>& sent) const {
    rv1::ServerReflectionResponse resp;
    resp.set_valid_host(req.host());
    *resp.mutable_original_request() = req;
    const DescriptorPool* pool = DescriptorPool::generated_pool();
    auto error = [&resp](grpc::StatusCode code, const std::string& message) {
      resp.mutable_error_response()->set_error_code(static_cast<int32_t>(code));
      resp.mutable_error_response()->set_error_message(message);
      return resp;
    };
    auto files = [&](const FileDescriptor* file) {
      AddFile(file, sent, resp.mutable_file_descriptor_response());
      // A client asking again for a file it had still gets it.
      if (resp.file_descriptor_response().file_descriptor_proto_size() == 0) {
        sent.erase(file->name());
        AddFile(file, sent, resp.mutable_file_descriptor_response());
      }
      return resp;
    };
    switch (req.message_request_case()) {
      case rv1::ServerReflectionRequest::kListServices:
        for (const std::string& name : services_) {
          resp.mutable_list_services_response()->add_service()->set_name(name);
        }
        return resp;
      case rv1::ServerReflectionRequest::kFileByFilename: {
        const FileDescriptor* file = pool->FindFileByName(req.file_by_filename());
        if (file == nullptr) {
          return error(grpc::StatusCode::NOT_FOUND,
                       absl::StrCat("no file '", req.file_by_filename(), "'"));
        }
        return files(file);
      }
      case rv1::ServerReflectionRequest::kFileContainingSymbol: {
        const FileDescriptor* file = pool->FindFileContainingSymbol(req.file_containing_symbol());
        if (file == nullptr) {
          return error(grpc::StatusCode::NOT_FOUND,
                       absl::StrCat("no symbol '", req.file_containing_symbol(), "'"));
        }
        return files(file);
      }
      case rv1::ServerReflectionRequest::kFileContainingExtension: {
        const rv1::ExtensionRequest& x = req.file_containing_extension();
        const auto* type = pool->FindMessageTypeByName(x.containing_type());
        const auto* ext = type ? pool->FindExtensionByNumber(type, x.extension_number()) : nullptr;
        if (ext == nullptr) {
          return error(grpc::StatusCode::NOT_FOUND,
                       absl::StrCat("no extension ", x.extension_number(), " of '",
                                    x.containing_type(), "'"));
        }
        return files(ext->file());
      }
      case rv1::ServerReflectionRequest::kAllExtensionNumbersOfType: {
        const auto* type = pool->FindMessageTypeByName(req.all_extension_numbers_of_type());
        if (type == nullptr) {
          return error(grpc::StatusCode::NOT_FOUND,
                       absl::StrCat("no type '", req.all_extension_numbers_of_type(), "'"));
        }
        std::vector<const google::protobuf::FieldDescriptor*> exts;
        pool->FindAllExtensions(type, &exts);
        auto* numbers = resp.mutable_all_extension_numbers_response();
        numbers->set_base_type_name(type->full_name());
        for (const auto* e : exts) numbers->add_extension_number(e->number());
        return resp;
      }
      default:
        return error(grpc::StatusCode::INVALID_ARGUMENT,
                     "the request names nothing to reflect on (list_services, file_by_filename, "
                     "file_containing_symbol, ...)");
    }
  }

  // `file`, then the files it imports (transitively) that this stream has not had.
  static void AddFile(const FileDescriptor* file, absl::flat_hash_set<std::string>& sent,
                      rv1::FileDescriptorResponse* out) {
    if (!sent.insert(file->name()).second) return;
    google::protobuf::FileDescriptorProto proto;
    file->CopyTo(&proto);
    proto.SerializeToString(out->add_file_descriptor_proto());
    for (int i = 0; i < file->dependency_count(); ++i) AddFile(file->dependency(i), sent, out);
  }

  const std::vector<std::string> services_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeReflectionV1(std::vector<std::string> services) {
  return std::make_unique<ReflectionV1>(std::move(services));
}

}  // namespace sluice::grpcfront
