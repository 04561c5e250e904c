// The engine's public interface, the one header its users (the HTTP and gRPC fronts, the
// CLI, benchmarks) include: loading, submitting and aborting requests, the request and
// sampling types, the output deltas a request's stream carries, refusals with a retry
// delay, health and stats. What lies behind it (scheduler, KV cache, runners, models) is
// the engine's own.
// Thread safety: Engine's methods are safe from any thread; so are RequestStream's.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice {

using RequestId = uint64_t;
using Clock = std::chrono::steady_clock;

namespace grammar {
class Automaton;
class Grammar;
class Vocabulary;
}  // namespace grammar

// Structured outputs: the generated text must match `grammar`, token by token through
// `vocab` (each token's bytes). Built by a front with engine/grammar/compile.h.
// `automaton`, when set, is the grammar's state machine shared by every request that
// uses this constraint (its transitions and masks computed once for all of them).
struct OutputConstraint {
  std::shared_ptr<const grammar::Grammar> grammar;
  std::shared_ptr<const grammar::Vocabulary> vocab;
  std::shared_ptr<grammar::Automaton> automaton;
};

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  std::optional<uint64_t> seed;  // unseeded requests get a random seed at admission
  int max_tokens = 16;
  bool ignore_eos = false;
  std::vector<int32_t> stop_token_ids;
  float presence_penalty = 0.0f;    // on generated tokens, OpenAI semantics
  float frequency_penalty = 0.0f;   // on generated tokens, OpenAI semantics
  float repetition_penalty = 1.0f;  // on prompt and generated tokens, transformers semantics
  int logprobs = -1;                // top alternatives to report per token; -1: no logprobs
  // Top alternatives for each prompt token after the first, scored in the prompt's own
  // forward pass; -1: none. Such a request reads nothing from the prefix cache until its
  // prompt is scored (cached blocks hold no logits), and may ask max_tokens 0.
  int prompt_logprobs = -1;
  // Added to the logits before temperature (OpenAI's logit_bias): token id, [-100, 100].
  std::vector<std::pair<int32_t, float>> logit_bias;
  std::vector<int32_t> allowed_token_ids;       // non-empty: only these may be sampled
  std::vector<std::vector<int32_t>> bad_words;  // token sequences never completed
  int min_tokens = 0;  // end-of-sequence and stop tokens are not sampled before this many
  // Only tokens the grammar allows are sampled (and logprobs are of that masked
  // distribution); the request stops once the grammar admits nothing but the end.
  std::shared_ptr<const OutputConstraint> constraint;
  // With speculative decoding on (EngineOptions::speculative_method), false keeps this
  // request on plain decoding. Its tokens are the same either way.
  bool speculative = true;
};

// The ranges every front accepts. An error is InvalidArgument whose message starts with
// the field's name; InvalidField tells which field it was.
inline constexpr int kMaxLogprobs = 20;
absl::Status ValidateSampling(const SamplingParams& sampling);
// Stop strings (matched by the fronts on the detokenized text): at most kMaxStopStrings,
// each 1 to kMaxStopStringBytes bytes. InvalidArgument naming `stop`.
inline constexpr int kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 1024;
absl::Status ValidateStops(const std::vector<std::string>& stops);

// The field an InvalidArgument from the engine names, when it names one (a field of
// SamplingParams, or "prompt").
std::optional<std::string> InvalidField(const absl::Status& status);
// An InvalidArgument naming `field` ("'field' <message>"), as the validator's are.
absl::Status InvalidFieldError(const std::string& field, const std::string& message);
inline absl::Status InvalidPrompt(const std::string& message) {
  return InvalidFieldError("prompt", message);
}

// A sampled token's log-probability under the model (before sampling filters), with the
// most likely alternatives.
struct TokenLogprobs {
  float logprob = 0.0f;
  int rank = 0;  // 1 + the tokens more likely than it (vLLM's rank); 0: not known
  std::vector<std::pair<int32_t, float>> top;  // by rank, from 1
};

enum class FinishReason { kNone, kStop, kLength, kAbort, kError };

const char* FinishReasonName(FinishReason r);

// What one step produced for one request: its new tokens, and on the last output the
// reason it ended.
struct RequestOutput {
  RequestId id = 0;
  std::vector<int32_t> new_token_ids;
  std::vector<TokenLogprobs> logprobs;  // one per new token when requested
  // With sampling.prompt_logprobs, on the request's first output only: one per prompt
  // token after the first (token i scored by the logits of position i - 1).
  std::vector<TokenLogprobs> prompt_logprobs;
  FinishReason finish_reason = FinishReason::kNone;  // set on the last output only
  int num_prompt_tokens = 0;
  int num_cached_prompt_tokens = 0;
  int num_output_tokens = 0;
  double queue_time_s = 0.0;   // arrival to first scheduling
  std::string error;           // set with FinishReason::kError
  int32_t stop_token_id = -1;  // the stop_token_ids entry that ended it; -1: none
  Clock::time_point time;      // when the engine handed it over
  bool finished() const { return finish_reason != FinishReason::kNone; }
};

// A request's output channel: the engine thread pushes, the front pops (blocking) or is
// notified.
class RequestStream {
 public:
  explicit RequestStream(RequestId id) : id_(id) {}

  RequestId id() const { return id_; }

  void Push(RequestOutput output);

  // The next output, waiting up to `timeout`; nullopt on timeout.
  std::optional<RequestOutput> Pop(std::chrono::milliseconds timeout);

  // Everything pushed so far, without waiting.
  std::vector<RequestOutput> Drain();

  // Called (on the pushing thread) after each push; replaces any previous notifier.
  void SetNotifier(std::function<void()> notifier);

 private:
  const RequestId id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestOutput> queue_;
  std::function<void()> notifier_;
};

struct SubmitParams {
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;
  std::string cache_salt;
  int priority = 0;
};

// Memory by kind: device memory on the CUDA backend, host memory on the CPU backend.
struct MemoryUsage {
  int64_t weights = 0;
  int64_t kv_cache = 0;     // the whole pool
  int64_t activations = 0;  // step buffers and workspaces
  int64_t cuda_graphs = 0;  // CUDA only
  int64_t other = 0;        // what the device (or the process's RSS) holds beyond the rest
  int64_t device_total = 0, device_used = 0;  // CUDA: the driver's figures; 0 on the CPU
};

// One engine step with work, for the step metrics.
struct StepSample {
  double seconds = 0;
  int num_tokens = 0;  // tokens computed (prefill chunks and decodes)
  int num_seqs = 0;
};

// Every limit of one engine, in one place: the scheduler, the runner and admission all
// read them from here.
struct EngineConfig {
  int max_num_seqs = 256;
  int max_num_batched_tokens = 2048;
  int max_model_len = 2048;  // context window
  bool enable_prefix_caching = true;
  std::vector<int32_t> eos_token_ids;
  int max_waiting_requests = 256;
  int64_t max_waiting_tokens = 1 << 18;
  double slo_ttft_ms = 0.0;  // 0: no refusal on predicted time to first token
  double ttft_slack = 2.0;   // refuse when predicted TTFT > slack * slo_ttft_ms
  // Health (Engine::Health): this many failed steps in a row make the engine unready
  // (it refuses new requests, so nothing can prove it well again); unready for longer
  // than unready_grace_s, it is no longer live either (its container wants a restart).
  // A step running longer than step_timeout_s (a wedged device) makes it both at once.
  int unready_after_failed_steps = 3;
  double unready_grace_s = 30.0;
  double step_timeout_s = 300.0;
  // The engine's time (arrival, queue time, health deadlines); empty: Clock::now. Tests
  // set a manual clock instead of sleeping.
  std::function<Clock::time_point()> clock;
  // Called on the engine thread after each step with work (metrics); empty: none.
  std::function<void(const StepSample&)> on_step;
  // Speculative decoding (0 drafts: off): up to num_speculative_tokens drafts a request
  // and step, as many as the step-cost model finds worth verifying (see Scheduler), and
  // none while speculative_disable_batch_size (0: no limit) or more requests run. The
  // model starts from spec_step_base_s + spec_step_per_token_s x n seconds for a step of
  // n tokens and, with spec_cost_from_steps, is refitted from the steps as they run.
  int num_speculative_tokens = 0;
  int speculative_disable_batch_size = 0;
  double spec_step_base_s = 0.010, spec_step_per_token_s = 0.001;
  bool spec_cost_from_steps = true;
};

// How to build an engine for a model directory (Engine::Load).
struct EngineOptions {
  std::string model;            // empty: the embedded default model (DefaultModelDir)
  std::string device = "cpu";   // cpu or cuda
  bool random_weights = false;  // config.json only, weights drawn from random_seed
  uint64_t random_seed = 0;
  double gpu_memory_utilization = 0.9;  // cuda
  bool enforce_eager = false;           // cuda: no CUDA graphs
  bool tune_gemms = false;              // cuda: time GEMM algorithms at load
  int tensor_parallel_size = 1;         // ranks the model is split over (cpu: threads)
  int cpu_threads = 0;                  // cpu: intra-op threads (0: the CPUs this process may use)
  // "" (the checkpoint as stored, FP8 ones included) or "fp8": a 16-bit checkpoint's
  // linear layers quantized to FP8 on load (per channel, inputs per token).
  std::string quantization;
  int num_kv_blocks = 0;  // 0: sized from kv_cache_gib (cpu) or free memory (cuda)
  double kv_cache_gib = 1.0;
  int block_size = 16;
  int max_num_seqs = 64;
  int max_num_batched_tokens = 2048;
  int max_waiting_requests = 256;
  int64_t max_waiting_tokens = 1 << 18;
  double slo_ttft_ms = 0.0;
  bool enable_prefix_caching = true;
  std::vector<int32_t> extra_eos_token_ids;  // beside config.json's (the tokenizer's)
  bool quiet = false;                        // no progress logs
  double step_timeout_s = 300.0;             // a step running longer fails liveness
  double unready_grace_s = 30.0;             // unready from failing steps this long fails liveness
  std::string inject_step_faults;            // testing: FaultInjectingRunner spec; empty: none
  // Speculative decoding (CPU backend): "" (off), "ngram" (prompt lookup of ngram_min to
  // ngram_max tokens) or "draft" (a smaller model, draft_model, with the same vocabulary,
  // proposing greedily from its own KV cache); num_speculative_tokens drafts per step.
  std::string speculative_method;
  int num_speculative_tokens = 4;
  int ngram_min = 2, ngram_max = 4;
  std::string draft_model;
  int speculative_disable_batch_size = 0;          // 0: the step-cost model alone decides
  std::function<void(const StepSample&)> on_step;  // see EngineConfig::on_step
};

// The model directory used when none is given: $SLUICE_MODEL, the source tree's copy, or
// the installed one beside the binary.
std::string DefaultModelDir();

// What an engine serves, for the fronts' model listings.
struct ModelInfo {
  std::string model_dir;
  std::string architecture;  // config.json's model_type
  std::string summary;       // shape, for logs
  int vocab_size = 0;
  int max_model_len = 0;
  int block_size = 0;
  int num_kv_blocks = 0;
  std::vector<int32_t> eos_token_ids;  // the model's and the tokenizer's
};

// What the engine says of itself, for readiness and liveness probes.
struct EngineHealth {
  bool ready = true;   // admits work: steps succeed
  bool live = true;    // worth keeping: not stuck, not failing step after step
  std::string reason;  // why not, when not
};

struct EngineStats {
  int num_waiting = 0;
  int num_running = 0;
  int64_t num_waiting_tokens = 0;
  // Waiting requests and their tokens that cannot start at the next step: beyond the
  // running slots left free (what admission limits).
  int num_queued = 0;
  int64_t num_queued_tokens = 0;
  int num_runner_requests = 0;  // requests whose state the runner holds
  MemoryUsage memory;
  int64_t kv_used_bytes = 0;  // blocks held x bytes per block
  // Prompt tokens served from the prefix cache, each at the prefill seconds per token
  // measured over recent steps when it was served.
  double prefill_seconds_avoided = 0.0;
  double kv_usage = 0.0;
  int num_kv_blocks = 0;
  int64_t num_arrived = 0, num_admitted = 0, num_refused = 0, num_invalid = 0;
  int64_t num_finished = 0, num_aborted = 0, num_errors = 0, num_preemptions = 0;
  int64_t prompt_tokens = 0, generation_tokens = 0, num_steps = 0;
  int64_t prefix_queried_tokens = 0, prefix_hit_tokens = 0, num_evictions = 0;
  int64_t num_failed_steps = 0;
  // Speculative decoding: verifications (a request's drafts in one step), drafts
  // verified, drafts accepted, and accepted drafts by position (0: the first draft).
  int64_t spec_num_drafts = 0, spec_num_draft_tokens = 0, spec_num_accepted_tokens = 0;
  std::vector<int64_t> spec_accepted_per_position;
  // The step-cost model that sizes drafts: a step of n tokens takes base + per_token x n.
  double spec_step_base_s = 0, spec_step_per_token_s = 0;
  double prefill_tokens_per_s = 0.0;  // measured, smoothed
  double finish_per_s = 0.0;          // measured, smoothed
};

// The retry delay a refusal carries, when it carries one.
std::optional<int64_t> RetryAfterMs(const absl::Status& status);

class Runner;

class Engine {
 public:
  // Loads the model in options.model on options.device, sizes the KV cache and starts the
  // engine. Errors name the file at fault.
  static absl::StatusOr<std::unique_ptr<Engine>> Load(const EngineOptions& options);
  // An engine over a runner built elsewhere (tests, benchmarks).
  static absl::StatusOr<std::unique_ptr<Engine>> Create(EngineConfig config,
                                                        std::unique_ptr<Runner> runner,
                                                        ModelInfo model = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Admits the request and returns its stream, or refuses at once: InvalidArgument for a
  // bad request (naming what is wrong, see InvalidField), ResourceExhausted with a retry
  // delay (RetryAfterMs) when overloaded, Unavailable while draining.
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(SubmitParams params);

  // Aborts a request from any thread; its blocks are freed on the engine thread's next
  // iteration and its stream gets a final output with FinishReason::kAbort.
  void Abort(RequestId id);

  // Stops admitting; in-flight requests run to completion.
  void StartDrain();
  bool draining() const;
  // Waits until no request is waiting or running and the runner has heard of every one
  // that ended; false on timeout.
  bool WaitIdle(std::chrono::milliseconds timeout);

  // Aborts whatever is left and joins the engine thread. Idempotent.
  void Shutdown();

  EngineStats Stats() const;
  EngineHealth Health() const;
  const EngineConfig& config() const;
  const ModelInfo& model() const;

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
