#include "engine/core/loader.h"
#include "engine/capacity.h"
#include "engine/flags.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/model/cpu_model.h"
#include "engine/model/cpu_model_group.h"
#include "engine/model/tensor_parallel.h"
#include "engine/runner/cpu_runner.h"
#include "engine/runner/cuda_runner.h"
#include "engine/runner/fault_injection.h"
#include "engine/spec/draft_model_proposer.h"
#include "engine/spec/proposer.h"
#include "sluice/kernels/gemm.h"
#include "sluice/kernels/thread_pool.h"
#include "spdlog/spdlog.h"

namespace sluice {

std::string DefaultModelDir() {
  if (const char* env = std::getenv("SLUICE_MODEL"); env != nullptr && *env != '\0') return env;
  // The source tree's copy when built here; an installed binary (`cmake --install`, the
  // container images) finds its copy in ../share/sluice/models beside bin/.
  std::error_code ec;
  if (std::filesystem::exists(SLUICE_DEFAULT_MODEL_DIR, ec)) return SLUICE_DEFAULT_MODEL_DIR;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const auto installed = exe.parent_path().parent_path() / "share/sluice/models/sluice-tiny-code";
    if (std::filesystem::exists(installed, ec)) return installed.string();
  }
  return SLUICE_DEFAULT_MODEL_DIR;
}

void AddEngineFlags(CLI::App* cmd, EngineOptions* o) {
  cmd->add_option("--model", o->model, "Model directory (default: the embedded tiny model)");
  cmd->add_option("--device", o->device, "Backend: cpu, or cuda (bf16 on one GPU)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_flag("--random-weights", o->random_weights,
                "Run the config.json's shape with random weights, reading no checkpoint");
  cmd->add_option("--random-seed", o->random_seed, "Seed of --random-weights");
  cmd->add_option("--gpu-memory-utilization", o->gpu_memory_utilization,
                  "Fraction of the GPU's memory for weights, activations and KV cache")
      ->check(CLI::Range(0.05, 1.0));
  cmd->add_flag("--enforce-eager", o->enforce_eager, "--device cuda: no CUDA graphs");
  cmd->add_flag("--gemm-tuning", o->tune_gemms,
                "--device cuda: time cuBLASLt's candidate algorithms at load instead of taking "
                "its first pick");
  cmd->add_option("--tensor-parallel-size,--tp", o->tensor_parallel_size,
                  "Ranks the model is split over (heads and MLP columns): threads on the CPU "
                  "backend, GPUs with --device cuda")
      ->envname("SLUICE_TENSOR_PARALLEL_SIZE")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--cpu-threads", o->cpu_threads,
                  "CPU backend: threads each step's GEMMs and attention are split over "
                  "(default 0: the CPUs this process may use, within its cgroup's quota)")
      ->envname("SLUICE_CPU_THREADS")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--quantization,-q", o->quantization,
                  "fp8: quantize a 16-bit checkpoint's linear layers to FP8 as it loads (FP8 "
                  "checkpoints are read as FP8 without it)")
      ->check(CLI::IsMember({"fp8"}));
  cmd->add_option("--num-kv-blocks", o->num_kv_blocks,
                  "KV cache blocks (default: from --kv-cache-gib)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-cache-gib", o->kv_cache_gib, "KV cache memory on the CPU backend")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--block-size", o->block_size, "Tokens per KV block")->check(CLI::Range(1, 256));
  cmd->add_option("--max-num-seqs", o->max_num_seqs, "Requests running at once")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-num-batched-tokens", o->max_num_batched_tokens, "Token budget per step")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-waiting-requests", o->max_waiting_requests,
                  "Waiting requests before new ones are refused")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-waiting-tokens", o->max_waiting_tokens,
                  "Waiting prompt tokens before new requests are refused")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--slo-ttft-ms", o->slo_ttft_ms,
                  "TTFT SLO; requests predicted to miss it by the slack are refused (0: off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("!--no-prefix-caching", o->enable_prefix_caching, "Disable prefix caching");
  cmd->add_option("--step-timeout-s", o->step_timeout_s,
                  "An engine step running longer than this fails liveness (a wedged device)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--unready-grace-s", o->unready_grace_s,
                  "How long the engine may stay unready from failing steps before liveness "
                  "fails too")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--speculative-method", o->speculative_method,
                  "Speculative decoding (CPU backend): ngram (prompt lookup) or draft (a "
                  "smaller model, --draft-model); default off")
      ->check(CLI::IsMember({"ngram", "draft"}));
  cmd->add_option("--num-speculative-tokens", o->num_speculative_tokens,
                  "Drafts proposed per request and step")
      ->check(CLI::Range(1, 16));
  cmd->add_option("--ngram-min", o->ngram_min, "Shortest suffix the n-gram proposer looks up")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--ngram-max", o->ngram_max, "Longest suffix the n-gram proposer looks up")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--draft-model", o->draft_model,
                  "The draft model's directory (--speculative-method draft): same vocabulary "
                  "and tokenizer as --model");
  cmd->add_option("--speculative-disable-batch-size", o->speculative_disable_batch_size,
                  "No drafts while this many requests or more run (default 0: no limit; "
                  "drafts are sized by the measured cost of a step's tokens anyway)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--inject-step-faults", o->inject_step_faults,
                  "Testing only: make engine steps fail or hang (after=N,fail=K,hang)");
}

absl::StatusOr<std::unique_ptr<Runner>> CreateBackend(const EngineOptions& o,
                                                      const std::string& model_dir,
                                                      const ModelConfig& config,
                                                      const StepFaults* rank_faults);

namespace {

// --cpu-threads, or the CPUs this process may use.
int CpuThreads(const EngineOptions& o) {
  return o.cpu_threads > 0 ? o.cpu_threads : kernels::DefaultCpuThreads();
}

bool SameFileContents(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  if (!fa || !fb) return false;
  return std::equal(std::istreambuf_iterator<char>(fa), std::istreambuf_iterator<char>(),
                    std::istreambuf_iterator<char>(fb), std::istreambuf_iterator<char>());
}

// The proposer --speculative-method asks for, or none. A draft model must share the
// target's vocabulary and tokenizer; its KV cache has as many blocks as the target's, so
// that whatever fits one fits the other.
absl::StatusOr<std::unique_ptr<Proposer>> CreateProposer(const EngineOptions& o,
                                                         const std::string& model_dir,
                                                         const ModelConfig& config,
                                                         int num_blocks) {
  if (o.speculative_method.empty()) {
    if (!o.draft_model.empty()) {
      return absl::InvalidArgumentError("--draft-model needs --speculative-method draft");
    }
    return nullptr;
  }
  if (o.speculative_method == "ngram") {
    if (o.ngram_min > o.ngram_max) {
      return absl::InvalidArgumentError(
          absl::StrCat("--ngram-min ", o.ngram_min, " is more than --ngram-max ", o.ngram_max));
    }
    if (!o.draft_model.empty()) {
      return absl::InvalidArgumentError("--draft-model needs --speculative-method draft");
    }
    return std::make_unique<NgramProposer>(o.ngram_min, o.ngram_max);
  }
  if (o.speculative_method != "draft") {
    return absl::InvalidArgumentError(
        absl::StrCat("--speculative-method ", o.speculative_method, ": expected ngram or draft"));
  }
  if (o.draft_model.empty()) {
    return absl::InvalidArgumentError("--speculative-method draft needs --draft-model DIR");
  }
  SLUICE_ASSIGN_OR_RETURN(const ModelConfig draft_config, LoadModelConfig(o.draft_model));
  if (draft_config.vocab_size != config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--draft-model ", o.draft_model, " has a vocabulary of ", draft_config.vocab_size,
        " tokens, and --model ", model_dir, " one of ", config.vocab_size));
  }
  namespace fs = std::filesystem;
  const fs::path mine = fs::path(model_dir) / "tokenizer.json";
  const fs::path theirs = fs::path(o.draft_model) / "tokenizer.json";
  std::error_code ec;
  if (fs::exists(mine, ec) && fs::exists(theirs, ec) && !SameFileContents(mine, theirs)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--draft-model ", o.draft_model, ": its tokenizer.json differs from ", mine.string()));
  }
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<CpuModel> draft, CpuModel::Load(o.draft_model));
  if (!o.quiet) {
    spdlog::info("draft model {} ({}), {} drafts per step", o.draft_model, draft_config.Summary(),
                 o.num_speculative_tokens);
  }
  auto group = std::make_unique<CpuModelGroup>(std::move(draft), num_blocks, o.block_size);
  group->SetThreads(CpuThreads(o));
  return std::make_unique<DraftModelProposer>(std::move(group));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Runner>> CreateRunner(const EngineOptions& o,
                                                     const std::string& model_dir,
                                                     ModelConfig* config) {
  SLUICE_ASSIGN_OR_RETURN(*config, LoadModelConfig(model_dir, o.quantization));
  SLUICE_RETURN_IF_ERROR(CheckTensorParallel(*config, o.tensor_parallel_size));
  std::optional<StepFaults> faults;
  if (!o.inject_step_faults.empty()) {
    SLUICE_ASSIGN_OR_RETURN(faults, ParseStepFaults(o.inject_step_faults));
    if (faults->rank >= o.tensor_parallel_size) {
      return absl::InvalidArgumentError(absl::StrCat("--inject-step-faults rank=", faults->rank,
                                                     ": there are ", o.tensor_parallel_size,
                                                     " ranks (--tensor-parallel-size)"));
    }
  }
  // A fault of one rank goes to that rank's part of the step; others wrap the runner.
  const bool rank_fault = faults && faults->rank >= 0;
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<Runner> runner,
                          CreateBackend(o, model_dir, *config, rank_fault ? &*faults : nullptr));
  if (faults && !rank_fault) {
    runner = std::make_unique<FaultInjectingRunner>(std::move(runner), *faults);
  }
  return runner;
}

absl::StatusOr<std::unique_ptr<Runner>> CreateBackend(const EngineOptions& o,
                                                      const std::string& model_dir,
                                                      const ModelConfig& model_config,
                                                      const StepFaults* rank_faults) {
  const ModelConfig* config = &model_config;
  const auto start = std::chrono::steady_clock::now();
  auto seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  auto progress = [&](int done, int total) {
    if (!o.quiet) spdlog::info("loading weights: layer {}/{}", done, total);
  };
  const int tp = o.tensor_parallel_size;
  if (o.device == "cuda") {
    if (config->fp8.enabled) {
      return absl::UnimplementedError(absl::StrCat(
          "--device cuda: ", model_dir, " has FP8 weights (", config->fp8.layout,
          "), and the CUDA runner does not run FP8 GEMMs yet; --device cpu computes them"));
    }
    if (!o.speculative_method.empty()) {
      return absl::UnimplementedError(
          absl::StrCat("--device cuda --speculative-method ", o.speculative_method,
                       ": the CUDA runner does not verify drafts yet; --device cpu does"));
    }
    if (tp > 1 || rank_faults != nullptr) {
      return absl::UnimplementedError(absl::StrCat(
          "--device cuda --tensor-parallel-size ", tp,
          ": the CUDA runner does not shard over GPUs yet (one GPU per engine); --device cpu "
          "runs ",
          tp, " ranks as threads"));
    }
    CudaRunnerOptions co;
    co.model_dir = model_dir;
    co.random_weights = o.random_weights;
    co.seed = o.random_seed;
    co.gpu_memory_utilization = o.gpu_memory_utilization;
    co.num_kv_blocks = o.num_kv_blocks;
    co.block_size = o.block_size;
    co.max_num_seqs = o.max_num_seqs;
    co.max_num_batched_tokens = o.max_num_batched_tokens;
    co.enforce_eager = o.enforce_eager;
    co.tune_gemms = o.tune_gemms;
    co.progress = progress;
    CudaRunnerInfo info;
    SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<Runner> runner, CreateCudaRunner(co, &info));
    if (!o.quiet) {
      spdlog::info(
          "{} on {}{}: weights {:.2f} GiB, KV cache {} blocks of {} tokens ({:.2f} GiB), "
          "GEMMs tuned in {:.1f} s, {} CUDA graphs captured in {:.1f} s; ready in {:.1f} s",
          config->Summary(), info.device_name, o.random_weights ? " (random weights)" : "",
          info.weight_gib, info.num_kv_blocks, o.block_size, info.kv_cache_gib, info.gemm_tune_s,
          info.num_graphs, info.graph_capture_s, seconds());
    }
    return runner;
  }
  // The CPU backend holds the weights in fp32: refuse what cannot fit before allocating.
  const double weight_bytes = static_cast<double>(WeightBytes(*config, 4));
  const double host_bytes =
      static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  if (host_bytes > 0 && weight_bytes > 0.9 * host_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: the CPU backend needs %.1f GiB for this model's weights in fp32, and this machine "
        "has %.1f GiB of memory; use --device cuda",
        model_dir, weight_bytes / (1 << 30), host_bytes / (1 << 30)));
  }
  // `sluice plan --backend cpu` sizes it the same way (engine/core/capacity).
  const int num_blocks = o.num_kv_blocks > 0
                             ? o.num_kv_blocks
                             : CpuKvBlocks(*config, o.kv_cache_gib, o.block_size, tp);
  std::unique_ptr<CpuModelGroup> group;
  if (tp > 1) {
    SLUICE_ASSIGN_OR_RETURN(group, CpuModelGroup::Load(model_dir, tp, num_blocks, o.block_size,
                                                       o.random_weights, o.random_seed, progress));
  } else {
    // One rank keeps the loaded weights as they are (sharding would copy them).
    std::unique_ptr<CpuModel> model;
    if (o.random_weights) {
      SLUICE_ASSIGN_OR_RETURN(model, CpuModel::LoadRandom(*config, o.random_seed));
    } else {
      SLUICE_ASSIGN_OR_RETURN(model, CpuModel::Load(model_dir, *config, progress));
    }
    group = std::make_unique<CpuModelGroup>(std::move(model), num_blocks, o.block_size);
  }
  if (rank_faults != nullptr) group->SetRankHook(RankFaultHook(*rank_faults));
  // One pool of our own per rank (the model turns the BLAS's threads off).
  const int threads = CpuThreads(o);
  group->SetThreads(threads);
  auto runner = std::make_unique<CpuRunner>(std::move(group));
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<Proposer> proposer,
                          CreateProposer(o, model_dir, *config, num_blocks));
  const bool speculates = proposer != nullptr;
  if (proposer) runner->SetProposer(std::move(proposer));
  if (!o.quiet) {
    spdlog::info("{}{} loaded in {:.2f} s; KV cache {} blocks of {} tokens{}; {} CPU threads, {}",
                 config->Summary(), o.random_weights ? " (random weights)" : "", seconds(),
                 num_blocks, o.block_size,
                 tp > 1 ? absl::StrFormat(", %d tensor-parallel ranks as threads", tp) : "",
                 threads, kernels::cpu::BlasName());
  }
  runner->ReserveStepBuffers(o.max_num_batched_tokens, o.max_num_seqs,
                             speculates ? o.num_speculative_tokens : 0);
  return std::unique_ptr<Runner>(std::move(runner));
}

EngineConfig EngineConfigFor(const EngineOptions& o, const ModelConfig& config) {
  EngineConfig ec;
  ec.max_num_seqs = o.max_num_seqs;
  ec.max_num_batched_tokens = o.max_num_batched_tokens;
  ec.max_model_len = config.max_position_embeddings;
  ec.enable_prefix_caching = o.enable_prefix_caching;
  ec.eos_token_ids = config.eos_token_ids;
  for (int32_t id : o.extra_eos_token_ids) {
    if (std::find(ec.eos_token_ids.begin(), ec.eos_token_ids.end(), id) == ec.eos_token_ids.end()) {
      ec.eos_token_ids.push_back(id);
    }
  }
  ec.max_waiting_requests = o.max_waiting_requests;
  ec.max_waiting_tokens = o.max_waiting_tokens;
  ec.slo_ttft_ms = o.slo_ttft_ms;
  ec.step_timeout_s = o.step_timeout_s;
  ec.unready_grace_s = o.unready_grace_s;
  ec.on_step = o.on_step;
  if (!o.speculative_method.empty()) ec.num_speculative_tokens = o.num_speculative_tokens;
  ec.speculative_disable_batch_size = o.speculative_disable_batch_size;
  return ec;
}

namespace {

// One line with what the memory holds once loaded: weights, the KV pool and what it
// fits, the step buffers, and what is left of the device (or host).
void LogMemoryPlan(const Runner& runner, const ModelConfig& config) {
  const MemoryUsage m = runner.memory();
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  const int64_t tokens = int64_t{runner.num_kv_blocks()} * runner.block_size();
  const int64_t fit = tokens / std::max(config.max_position_embeddings, 1);
  double total = static_cast<double>(m.device_total), left = 0;
  if (m.device_total > 0) {
    left = static_cast<double>(m.device_total - m.device_used);
  } else {
    total = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
    left = static_cast<double>(sysconf(_SC_AVPHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
  }
  spdlog::info(
      "memory plan: weights {:.2f} GiB, KV cache {:.2f} GiB ({} blocks of {} = {} tokens, {} "
      "sequences of {}), activations {:.2f} GiB{}; {:.2f} GiB free of {:.2f} GiB {}",
      m.weights / kGiB, m.kv_cache / kGiB, runner.num_kv_blocks(), runner.block_size(), tokens, fit,
      config.max_position_embeddings, m.activations / kGiB,
      m.cuda_graphs > 0 ? absl::StrFormat(", CUDA graphs %.2f GiB", m.cuda_graphs / kGiB) : "",
      left / kGiB, total / kGiB, m.device_total > 0 ? "on the device" : "of host memory");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const EngineOptions& o) {
  ModelInfo info;
  info.model_dir = o.model.empty() ? DefaultModelDir() : o.model;
  ModelConfig config;
  SLUICE_ASSIGN_OR_RETURN(std::unique_ptr<Runner> runner, CreateRunner(o, info.model_dir, &config));
  info.architecture = config.model_type;
  info.summary = config.Summary();
  if (!o.quiet) LogMemoryPlan(*runner, config);
  EngineConfig ec = EngineConfigFor(o, config);
  info.eos_token_ids = ec.eos_token_ids;
  return Engine::Create(std::move(ec), std::move(runner), std::move(info));
}

}  // namespace sluice
