#include "server/grpc/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/api.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "server/core/generation.h"
#include "server/grpc/reflection_v1.h"
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
// A request from its bytes, or INVALID_ARGUMENT naming the message that did not parse.
template <class M>
grpc::Status Parse(const grpc::ByteBuffer& bytes, M* msg) {
  std::vector<grpc::Slice> slices;
  std::string data;
  if (bytes.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      data.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    if (msg->ParseFromString(data)) return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("the request (", data.size(), " bytes) is not a valid ",
                                   M::descriptor()->full_name(),
                                   ": malformed protobuf, or a string field that is not UTF-8"));
}

template <class M>
grpc::ByteBuffer Serialize(const M& msg) {
  const std::string data = msg.SerializeAsString();
  grpc::Slice slice(data);
  return grpc::ByteBuffer(&slice, 1);
}

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

// A refusal (counted by the request core) as a gRPC status; a bad field is named as
// the request spells it (sampling.temperature, input).
grpc::Status FromRefusal(const Refusal& r) {
  switch (r.kind) {
    case Refusal::Kind::kOverloaded:
      return Overloaded(r.message, r.retry_after_ms);
    case Refusal::Kind::kUnavailable:
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, r.message);
    case Refusal::Kind::kInvalid:
      return Invalid(r.field.empty() || r.field == "prompt" ? "input" : "sampling." + r.field,
                     r.message);
    case Refusal::Kind::kInternal:
      break;
  }
  return grpc::Status(grpc::StatusCode::INTERNAL, r.message);
}

// Ready for requests, or the status that says why not.
grpc::Status CheckReady(ServerState* state) {
  if (std::optional<Unavailable> why = CheckAvailable(*state, kProtocol)) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, why->message);
  }
  return grpc::Status::OK;
}

// The request's sampling parameters with the HTTP API's defaults; ranges are the
// engine's (ValidateSampling, through Generation::Start), as for HTTP.
grpc::Status ToSampling(const v1::SamplingParams& in, SamplingParams* out,
                        Generation::Options* options) {
  if (in.has_temperature()) out->temperature = in.temperature();
  if (in.has_top_k()) out->top_k = in.top_k();
  if (in.has_top_p()) out->top_p = in.top_p();
  if (in.has_min_p()) out->min_p = in.min_p();
  if (in.has_seed()) out->seed = in.seed();
  if (in.has_max_tokens()) out->max_tokens = in.max_tokens();
  out->ignore_eos = in.ignore_eos();
  if (in.has_speculative()) out->speculative = in.speculative();
  out->stop_token_ids.assign(in.stop_token_ids().begin(), in.stop_token_ids().end());
  if (in.has_presence_penalty()) out->presence_penalty = in.presence_penalty();
  if (in.has_frequency_penalty()) out->frequency_penalty = in.frequency_penalty();
  if (in.has_repetition_penalty()) out->repetition_penalty = in.repetition_penalty();
  if (in.has_logprobs()) {
    // Present means asked for: -1 (HTTP's "none") is not a count here.
    if (in.logprobs() < 0 || in.logprobs() > kMaxLogprobs) {
      return Invalid("sampling.logprobs",
                     absl::StrCat("must be between 0 and ", kMaxLogprobs, ", got ", in.logprobs()));
    }
    out->logprobs = in.logprobs();
    options->logprobs = true;
  }
  options->stop.assign(in.stop().begin(), in.stop().end());
  for (const auto& [id, bias] : in.logit_bias()) out->logit_bias.emplace_back(id, bias);
  std::sort(out->logit_bias.begin(), out->logit_bias.end());  // map order is unspecified
  out->allowed_token_ids.assign(in.allowed_token_ids().begin(), in.allowed_token_ids().end());
  if (in.has_min_tokens()) out->min_tokens = in.min_tokens();
  return grpc::Status::OK;
}

void AddLogprobs(const Tokenizer& tok, const std::vector<int32_t>& ids,
                 const std::vector<TokenLogprobs>& logprobs, v1::GenerateResponse* response) {
  for (size_t i = 0; i < ids.size() && i < logprobs.size(); ++i) {
    v1::TokenLogprob* lp = response->add_logprobs();
    lp->set_token_id(ids[i]);
    lp->set_logprob(logprobs[i].logprob);
    lp->set_token(TokenText(tok, ids[i]));
    for (const auto& [id, value] : logprobs[i].top) {
      v1::TopLogprob* top = lp->add_top();
      top->set_token_id(id);
      top->set_logprob(value);
      top->set_token(TokenText(tok, id));
    }
  }
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

// One Generate call: a Generation from the request core, encoded as GenerateResponses.
// The engine thread's notifier and gRPC's callbacks meet under mu; one write is in
// flight at a time. Owned by gRPC until OnDone.
class GenerateReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  GenerateReactor(ServerState* state, v1::GenerateRequest req)
      : state_(state), req_(std::move(req)), arrival_(Clock::now()) {
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
    if (gen_) gen_->Cancel();
    FinishOnce(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      std::lock_guard<std::recursive_mutex> lock(shared_->mu);
      shared_->reactor = nullptr;  // the notifier no longer reaches this object
      if (gen_) {
        if (!gen_->done()) gen_->Cancel();
        gen_->Record();
        gen_.reset();
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
    Generation::Options options;
    options.protocol = kProtocol;
    if (grpc::Status s = ToSampling(req_.sampling(), &p.sampling, &options); !s.ok()) {
      state_->metrics->Rejected("invalid", kProtocol);
      return FinishOnce(s);
    }
    p.cache_salt = req_.cache_salt();
    p.priority = req_.priority();
    auto started = Generation::Start(*state_, std::move(p), std::move(options), arrival_);
    if (auto* refusal = std::get_if<Refusal>(&started)) return FinishOnce(FromRefusal(*refusal));
    gen_ = std::move(std::get<std::unique_ptr<Generation>>(started));
    std::weak_ptr<Shared> weak = shared_;
    gen_->stream().SetNotifier([weak] {
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
    if (writing_ || finish_called_ || !gen_) return;
    if (!final_) {
      GenerationDelta d = gen_->Poll();
      for (int32_t id : d.token_ids) pending_.add_token_ids(id);
      pending_.mutable_text()->append(d.text);
      AddLogprobs(*state_->tokenizer, d.token_ids, d.logprobs, &pending_);
      final_ = d.finished;
    }
    if (final_ && gen_->finish_reason() == FinishReason::kError) {
      gen_->Record();
      return FinishOnce(
          grpc::Status(grpc::StatusCode::INTERNAL, "generation failed: " + gen_->error()));
    }
    if (final_ && final_written_) {
      gen_->Record();
      return FinishOnce(grpc::Status::OK);
    }
    const bool have_news = pending_.token_ids_size() > 0 || !pending_.text().empty();
    if (!final_ && !(req_.stream() && have_news)) return;
    current_ = std::move(pending_);
    pending_.Clear();
    current_.set_request_id(request_id_);
    if (final_) {
      current_.set_finish_reason(ToProto(gen_->finish_reason()));
      v1::Usage* usage = current_.mutable_usage();
      usage->set_prompt_tokens(gen_->num_prompt_tokens());
      usage->set_cached_tokens(gen_->num_cached_tokens());
      usage->set_completion_tokens(static_cast<int32_t>(gen_->token_ids().size()));
      final_written_ = true;
    }
    writing_ = true;
    current_bytes_ = Serialize(current_);
    StartWrite(&current_bytes_);
  }

  ServerState* state_;
  const v1::GenerateRequest req_;
  const Clock::time_point arrival_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<Generation> gen_;
  std::string request_id_;
  v1::GenerateResponse pending_, current_;
  grpc::ByteBuffer current_bytes_;  // current_, as written
  bool writing_ = false, final_ = false, final_written_ = false, finish_called_ = false;
  std::optional<grpc::Status> deferred_finish_;
};

// A call that ends before it starts: its request did not parse.
class RefusedWriteReactor : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RefusedWriteReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

// The methods take their requests as bytes and parse them here, so that a malformed
// message is an INVALID_ARGUMENT naming it (grpc++ itself would answer UNIMPLEMENTED,
// with no message).
using RawGeneration = v1::Generation::WithRawCallbackMethod_Generate<
    v1::Generation::WithRawCallbackMethod_Tokenize<v1::Generation::WithRawCallbackMethod_Detokenize<
        v1::Generation::WithRawCallbackMethod_GetModelInfo<v1::Generation::CallbackService>>>>;

class GenerationService final : public RawGeneration {
 public:
  explicit GenerationService(ServerState* state) : state_(state) {}

  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext*,
                                                       const grpc::ByteBuffer* bytes) override {
    v1::GenerateRequest request;
    if (grpc::Status s = Parse(*bytes, &request); !s.ok()) return new RefusedWriteReactor(s);
    return new GenerateReactor(state_, std::move(request));
  }

  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                     grpc::ByteBuffer* resp) override {
    return Unary<v1::TokenizeRequest, v1::TokenizeResponse>(ctx, req, resp,
                                                            &GenerationService::DoTokenize);
  }
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* req,
                                       grpc::ByteBuffer* resp) override {
    return Unary<v1::DetokenizeRequest, v1::DetokenizeResponse>(ctx, req, resp,
                                                                &GenerationService::DoDetokenize);
  }
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* req,
                                         grpc::ByteBuffer* resp) override {
    return Unary<v1::GetModelInfoRequest, v1::ModelInfo>(ctx, req, resp,
                                                         &GenerationService::DoGetModelInfo);
  }

 private:
  // Parses the request, runs `handler` and serializes its answer.
  template <class Req, class Resp>
  grpc::ServerUnaryReactor* Unary(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* bytes,
                                  grpc::ByteBuffer* out,
                                  grpc::Status (GenerationService::*handler)(const Req&, Resp*)) {
    auto* reactor = ctx->DefaultReactor();
    Req req;
    Resp resp;
    grpc::Status s = Parse(*bytes, &req);
    if (s.ok()) s = Loaded();
    if (s.ok()) s = (this->*handler)(req, &resp);
    if (s.ok()) *out = Serialize(resp);
    reactor->Finish(s);
    return reactor;
  }

  grpc::Status DoTokenize(const v1::TokenizeRequest& req, v1::TokenizeResponse* resp) {
    auto ids = state_->tokenizer->Encode(req.text(), req.add_special_tokens());
    if (!ids.ok()) return Invalid("text", std::string(ids.status().message()));
    for (int32_t id : *ids) resp->add_token_ids(id);
    return grpc::Status::OK;
  }

  grpc::Status DoDetokenize(const v1::DetokenizeRequest& req, v1::DetokenizeResponse* resp) {
    const int vocab = state_->tokenizer->vocab_size();
    for (int i = 0; i < req.token_ids_size(); ++i) {
      if (req.token_ids(i) < 0 || req.token_ids(i) >= vocab) {
        return Invalid(absl::StrCat("token_ids[", i, "]"),
                       absl::StrCat(req.token_ids(i), " is not in the vocabulary of ", vocab));
      }
    }
    std::vector<int32_t> ids(req.token_ids().begin(), req.token_ids().end());
    resp->set_text(state_->tokenizer->Decode(ids, /*skip_special_tokens=*/false));
    return grpc::Status::OK;
  }

  grpc::Status DoGetModelInfo(const v1::GetModelInfoRequest&, v1::ModelInfo* info) {
    info->set_name(state_->served_model_name);
    info->set_context_window(state_->max_model_len);
    info->set_block_size(state_->block_size);
    info->set_architecture(state_->architecture);
    info->set_vocab_size(state_->tokenizer->vocab_size());
    return grpc::Status::OK;
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
  std::unique_ptr<grpc::Service> reflection_v1;
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
  // v1 beside grpc++'s v1alpha, both listing every service, health's included.
  impl_->reflection_v1 = MakeReflectionV1({"sluice.v1.Generation", "grpc.health.v1.Health",
                                           "grpc.reflection.v1.ServerReflection",
                                           "grpc.reflection.v1alpha.ServerReflection"});
  builder.RegisterService(impl_->reflection_v1.get());
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
