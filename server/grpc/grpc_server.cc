#include "server/grpc/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <cmath>
#include <mutex>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/core/engine.h"
#include "engine/tokenizer/incremental_detokenizer.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "sluice/v1/generation.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace sluice::grpcfront {
namespace {

namespace v1 = ::sluice::v1;
constexpr const char* kProtocol = "grpc";

grpc::Status Invalid(const std::string& field, const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat(field, ": ", message));
}

// RESOURCE_EXHAUSTED with google.rpc.RetryInfo in grpc-status-details-bin.
grpc::Status Overloaded(const std::string& message, int64_t retry_ms) {
  google::rpc::RetryInfo retry;
  retry.mutable_retry_delay()->set_seconds(retry_ms / 1000);
  retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>(retry_ms % 1000) * 1000000);
  google::rpc::Status details;
  details.set_code(static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  details.set_message(message);
  details.add_details()->PackFrom(retry);
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, message, details.SerializeAsString());
}

// The engine's refusal as a gRPC status, counted in the metrics.
grpc::Status FromEngine(ServerState* state, const absl::Status& s) {
  const std::string message(s.message());
  switch (s.code()) {
    case absl::StatusCode::kResourceExhausted:
      state->metrics->Rejected("overloaded", kProtocol);
      return Overloaded(message, RetryAfterMs(s).value_or(1000));
    case absl::StatusCode::kUnavailable:
      state->metrics->Rejected("draining", kProtocol);
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, message);
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      state->metrics->Rejected("invalid", kProtocol);
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("input: ", message));
    default:
      state->metrics->Rejected("invalid", kProtocol);
      return grpc::Status(grpc::StatusCode::INTERNAL, message);
  }
}

// Ready for requests, or the status that says why not.
grpc::Status CheckReady(ServerState* state) {
  if (std::optional<Unavailable> why = CheckAvailable(*state, kProtocol)) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, why->message);
  }
  return grpc::Status::OK;
}

// The request's sampling parameters, checked with the HTTP API's ranges.
grpc::Status ToSampling(const v1::SamplingParams& in, SamplingParams* out) {
  out->temperature = in.has_temperature() ? in.temperature() : 1.0f;
  if (!(out->temperature >= 0.0f && out->temperature <= 2.0f)) {
    return Invalid("sampling.temperature", "must be in [0, 2]");
  }
  out->top_k = in.has_top_k() ? in.top_k() : 0;
  if (out->top_k < 0) return Invalid("sampling.top_k", "must be >= 0");
  out->top_p = in.has_top_p() ? in.top_p() : 1.0f;
  if (!(out->top_p > 0.0f && out->top_p <= 1.0f)) return Invalid("sampling.top_p", "must be in (0, 1]");
  out->min_p = in.has_min_p() ? in.min_p() : 0.0f;
  if (!(out->min_p >= 0.0f && out->min_p <= 1.0f)) return Invalid("sampling.min_p", "must be in [0, 1]");
  if (in.has_seed()) out->seed = in.seed();
  out->max_tokens = in.has_max_tokens() ? in.max_tokens() : 16;
  if (out->max_tokens < 1) return Invalid("sampling.max_tokens", "must be >= 1");
  out->ignore_eos = in.ignore_eos();
  out->stop_token_ids.assign(in.stop_token_ids().begin(), in.stop_token_ids().end());
  out->presence_penalty = in.has_presence_penalty() ? in.presence_penalty() : 0.0f;
  out->frequency_penalty = in.has_frequency_penalty() ? in.frequency_penalty() : 0.0f;
  out->repetition_penalty = in.has_repetition_penalty() ? in.repetition_penalty() : 1.0f;
  if (std::abs(out->presence_penalty) > 2.0f) {
    return Invalid("sampling.presence_penalty", "must be in [-2, 2]");
  }
  if (std::abs(out->frequency_penalty) > 2.0f) {
    return Invalid("sampling.frequency_penalty", "must be in [-2, 2]");
  }
  if (!(out->repetition_penalty > 0.0f && out->repetition_penalty <= 10.0f)) {
    return Invalid("sampling.repetition_penalty", "must be in (0, 10]");
  }
  return grpc::Status::OK;
}

v1::FinishReason ToProto(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kAbort:
    case FinishReason::kError:
      return v1::FINISH_REASON_ABORT;
    case FinishReason::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

std::string NewRequestId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("gen-%016x", rng());
}

// One Generate call. The engine thread's notifier and gRPC's callbacks meet under mu_;
// one write is in flight at a time. Owned by gRPC until OnDone.
class GenerateReactor : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(ServerState* state, const v1::GenerateRequest* req)
      : state_(state), req_(*req), arrival_(Clock::now()) {
    Begin();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::recursive_mutex> lock(shared_->mu);
    writing_ = false;
    if (deferred_finish_) return FinishOnce(*deferred_finish_);
    if (!ok) return FinishOnce(grpc::Status::CANCELLED);  // the call is gone
    Pump();
  }

  // The client cancelled or the deadline passed: the request is aborted at once (its
  // blocks freed on the engine's next step) and the call finished.
  void OnCancel() override {
    std::lock_guard<std::recursive_mutex> lock(shared_->mu);
    cancelled_ = true;
    if (stream_ && !finished_) state_->engine->Abort(stream_->id());
    FinishOnce(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      std::lock_guard<std::recursive_mutex> lock(shared_->mu);
      shared_->reactor = nullptr;  // the notifier no longer reaches this object
      if (!finished_ && stream_) state_->engine->Abort(stream_->id());
      if (!counted_) {
        state_->metrics->Finished(cancelled_ ? "cancelled" : "error", timing_, kProtocol);
      }
    }
    state_->active_requests.fetch_sub(1);
    delete this;
  }

 private:
  // What the engine thread's notifier holds: it outlives the reactor.
  // NOTE: recursive: gRPC may run a reaction inline from StartWrite or Finish.
  struct Shared {
    std::recursive_mutex mu;
    GenerateReactor* reactor = nullptr;
  };

  void Begin() {
    state_->active_requests.fetch_add(1);
    shared_ = std::make_shared<Shared>();
    shared_->reactor = this;
    counted_ = true;  // refusals below are counted as such, not as finished requests
    std::lock_guard<std::recursive_mutex> lock(shared_->mu);
    if (grpc::Status s = CheckReady(state_); !s.ok()) return FinishOnce(s);
    state_->metrics->Arrived();
    request_id_ = req_.request_id().empty() ? NewRequestId() : req_.request_id();
    SubmitParams p;
    if (req_.has_token_ids()) {
      p.prompt_ids.assign(req_.token_ids().ids().begin(), req_.token_ids().ids().end());
    } else if (req_.has_text()) {
      auto ids = state_->tokenizer->Encode(req_.text(), /*add_special_tokens=*/true);
      if (!ids.ok()) {
        state_->metrics->Rejected("invalid", kProtocol);
        return FinishOnce(Invalid("text", std::string(ids.status().message())));
      }
      p.prompt_ids = std::move(*ids);
    }
    if (p.prompt_ids.empty()) {
      state_->metrics->Rejected("invalid", kProtocol);
      return FinishOnce(Invalid("input", "give text or token_ids, not empty"));
    }
    if (grpc::Status s = ToSampling(req_.sampling(), &p.sampling); !s.ok()) {
      state_->metrics->Rejected("invalid", kProtocol);
      return FinishOnce(s);
    }
    p.cache_salt = req_.cache_salt();
    p.priority = req_.priority();
    auto stream = state_->engine->Submit(std::move(p));
    if (!stream.ok()) return FinishOnce(FromEngine(state_, stream.status()));
    counted_ = false;
    detok_ = std::make_unique<IncrementalDetokenizer>(*state_->tokenizer, true);
    stream_ = *stream;
    std::weak_ptr<Shared> weak = shared_;
    stream_->SetNotifier([weak] {
      auto shared = weak.lock();
      if (!shared) return;
      std::lock_guard<std::recursive_mutex> lock(shared->mu);
      if (shared->reactor != nullptr) shared->reactor->Pump();
    });
    Pump();  // outputs pushed before the notifier was set
  }

  // Finish exactly once, and never while a write is in flight (then after it).
  // REQUIRES: shared_->mu held.
  void FinishOnce(const grpc::Status& status) {
    if (finish_called_) return;
    if (writing_) {
      if (!deferred_finish_) deferred_finish_ = status;
      return;
    }
    finish_called_ = true;
    Finish(status);
  }

  // REQUIRES: shared_->mu held.
  void Pump() {
    if (writing_ || finished_ || cancelled_ || !stream_) return;
    for (RequestOutput& out : stream_->Drain()) {
      if (out.new_token_ids.size() > 0 && timing_.ttft_s == 0.0) {
        timing_.ttft_s = std::chrono::duration<double>(out.time - arrival_).count();
      } else if (!out.new_token_ids.empty()) {
        timing_.itl_s.push_back(std::chrono::duration<double>(out.time - last_token_).count());
      }
      if (!out.new_token_ids.empty()) last_token_ = out.time;
      for (int32_t id : out.new_token_ids) pending_.add_token_ids(id);
      pending_.mutable_text()->append(detok_->Add(out.new_token_ids));
      usage_.set_prompt_tokens(out.num_prompt_tokens);
      usage_.set_cached_tokens(out.num_cached_prompt_tokens);
      usage_.set_completion_tokens(out.num_output_tokens);
      timing_.queue_s = out.queue_time_s;
      if (out.finished()) {
        final_ = true;
        finish_reason_ = out.finish_reason;
        error_ = out.error;
        pending_.mutable_text()->append(detok_->Finish());
        timing_.e2e_s = std::chrono::duration<double>(out.time - arrival_).count();
        timing_.output_tokens = out.num_output_tokens;
        break;
      }
    }
    if (final_ && finish_reason_ == FinishReason::kError) {
      finished_ = true;
      counted_ = true;
      state_->metrics->Finished("error", timing_, kProtocol);
      return FinishOnce(grpc::Status(grpc::StatusCode::INTERNAL, "generation failed: " + error_));
    }
    if (final_ && final_written_) {
      finished_ = true;
      counted_ = true;
      state_->metrics->Finished(finish_reason_ == FinishReason::kAbort ? "cancelled" : "success",
                                timing_, kProtocol);
      return FinishOnce(grpc::Status::OK);
    }
    const bool have_news = pending_.token_ids_size() > 0 || !pending_.text().empty();
    if (!final_ && !(req_.stream() && have_news)) return;
    current_ = std::move(pending_);
    pending_.Clear();
    current_.set_request_id(request_id_);
    if (final_) {
      current_.set_finish_reason(ToProto(finish_reason_));
      *current_.mutable_usage() = usage_;
      final_written_ = true;
    }
    writing_ = true;
    StartWrite(&current_);
  }

  ServerState* state_;
  const v1::GenerateRequest req_;
  Clock::time_point arrival_, last_token_;
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<RequestStream> stream_;
  std::unique_ptr<IncrementalDetokenizer> detok_;
  std::string request_id_;
  v1::GenerateResponse pending_, current_;
  v1::Usage usage_;
  RequestTiming timing_;
  FinishReason finish_reason_ = FinishReason::kNone;
  std::string error_;
  bool writing_ = false, final_ = false, final_written_ = false, finished_ = false;
  bool cancelled_ = false, counted_ = false, finish_called_ = false;
  std::optional<grpc::Status> deferred_finish_;
};

class GenerationService final : public v1::Generation::CallbackService {
 public:
  explicit GenerationService(ServerState* state) : state_(state) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext*, const v1::GenerateRequest* request) override {
    return new GenerateReactor(state_, request);
  }

  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const v1::TokenizeRequest* req,
                                     v1::TokenizeResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (grpc::Status s = Loaded(); !s.ok()) return reactor->Finish(s), reactor;
    auto ids = state_->tokenizer->Encode(req->text(), req->add_special_tokens());
    if (!ids.ok()) {
      reactor->Finish(Invalid("text", std::string(ids.status().message())));
      return reactor;
    }
    for (int32_t id : *ids) resp->add_token_ids(id);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx,
                                       const v1::DetokenizeRequest* req,
                                       v1::DetokenizeResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (grpc::Status s = Loaded(); !s.ok()) return reactor->Finish(s), reactor;
    const int vocab = state_->tokenizer->vocab_size();
    for (int i = 0; i < req->token_ids_size(); ++i) {
      if (req->token_ids(i) < 0 || req->token_ids(i) >= vocab) {
        reactor->Finish(Invalid(absl::StrCat("token_ids[", i, "]"),
                                absl::StrCat(req->token_ids(i), " is not in the vocabulary of ",
                                             vocab)));
        return reactor;
      }
    }
    std::vector<int32_t> ids(req->token_ids().begin(), req->token_ids().end());
    resp->set_text(state_->tokenizer->Decode(ids, /*skip_special_tokens=*/false));
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const v1::GetModelInfoRequest*,
                                         v1::ModelInfo* info) override {
    auto* reactor = ctx->DefaultReactor();
    if (grpc::Status s = Loaded(); !s.ok()) return reactor->Finish(s), reactor;
    info->set_name(state_->served_model_name);
    info->set_context_window(state_->max_model_len);
    info->set_block_size(state_->block_size);
    info->set_architecture(state_->architecture);
    info->set_vocab_size(state_->tokenizer->vocab_size());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  grpc::Status Loaded() const {
    if (!state_->loaded.load()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the model is still loading");
    }
    return grpc::Status::OK;
  }

  ServerState* state_;
};

}  // namespace

struct GrpcServer::Impl {
  ServerState* state;
  std::unique_ptr<GenerationService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

GrpcServer::GrpcServer(ServerState* state) : impl_(std::make_unique<Impl>()) {
  impl_->state = state;
  impl_->service = std::make_unique<GenerationService>(state);
}

GrpcServer::~GrpcServer() { Shutdown(0); }

absl::Status GrpcServer::Start(const std::string& host, int port) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(host, ":", port);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &impl_->port);
  builder.RegisterService(impl_->service.get());
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || impl_->port == 0) {
    return absl::UnavailableError(absl::StrCat("gRPC: cannot listen on ", address));
  }
  SetServing(false);
  return absl::OkStatus();
}

int GrpcServer::port() const { return impl_->port; }

void GrpcServer::SetServing(bool serving) {
  if (!impl_->server) return;
  if (auto* health = impl_->server->GetHealthCheckService()) {
    health->SetServingStatus(serving);  // the overall status ("") and every service
    health->SetServingStatus("sluice.v1.Generation", serving);
  }
}

void GrpcServer::Shutdown(double deadline_s) {
  if (!impl_->server) return;
  impl_->server->Shutdown(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(deadline_s * 1000)));
  impl_->server->Wait();
  impl_->server.reset();
}

}  // namespace sluice::grpcfront
