// engine/capacity: byte counts checked against the arithmetic written out by hand, the
// decode floor of Llama-3.1-8B that the GPU runs were measured against, and the CPU plan
// against the loaded engine's own KV cache.
#include "engine/capacity.h"

#include <cmath>

#include "engine/core/loader.h"
#include "engine/runner/runner.h"
#include "gtest/gtest.h"
#include "tests/common/fixtures.h"

namespace sluice {
namespace {

ModelConfig Llama31_8B() {
  auto c = LoadModelConfig(testing::SourceRoot() + "/models/configs/llama-3.1-8b");
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(CapacityTest, KvAndWeightBytesFollowTheShape) {
  const ModelConfig c = Llama31_8B();
  // 2 (K and V) x 32 layers x 8 KV heads x 128 x 2 bytes (bf16) per token.
  EXPECT_EQ(KvBytesPerToken(c, 2), 2 * 32 * 8 * 128 * 2);
  EXPECT_EQ(KvBytesPerBlock(c, 16, 2), int64_t{16} * 2 * 32 * 8 * 128 * 2);
  // Embedding and lm_head 128256 x 4096 each; per layer qkv (32 + 16) x 128 x 4096, o
  // 4096 x 4096, gate_up 2 x 14336 x 4096, down 4096 x 14336, two norms; a final norm.
  const int64_t per_layer = int64_t{48} * 128 * 4096 + int64_t{4096} * 4096 +
                            int64_t{2} * 14336 * 4096 + int64_t{4096} * 14336 + 2 * 4096;
  const int64_t params = 2 * int64_t{128256} * 4096 + 32 * per_layer + 4096;
  EXPECT_EQ(params, 8030261248);  // Llama-3.1-8B's published parameter count
  EXPECT_EQ(WeightBytes(c, 2), 2 * params);
}

TEST(CapacityTest, DecodeFloorOfLlama8BAtBatchOneIsTheMeasuredOne) {
  const ModelConfig c = Llama31_8B();
  const Roofline r = DecodeRoofline(c, 2);
  // Every weight but the embedding table (a gather), in bf16.
  EXPECT_DOUBLE_EQ(r.weight_bytes, 2.0 * (8030261248.0 - 128256.0 * 4096));
  // bench/RESULTS.md's floor: weights plus 2k tokens of KV at the 3.0 TB/s the H100 copies.
  const double floor_ms = DecodeFloorSeconds(r, 1, 2048, 3000) * 1e3;
  EXPECT_NEAR(floor_ms, (r.weight_bytes + 2048.0 * 131072) / 3e12 * 1e3, 1e-9);
  EXPECT_NEAR(floor_ms, 5.09, 0.01);

  PlanOptions o;
  o.device = *FindDevice("h100");
  o.device.bandwidth_gbps = 3000;
  o.input_len = 2048;
  o.output_len = 1;  // context input + output / 2 = 2048
  auto plan = PlanCapacity(c, o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_NEAR(plan->decode_floor_batch1_s * 1e3, floor_ms, 1e-9);
  // The largest batch reads more KV, never less than batch 1.
  EXPECT_GT(plan->decode_floor_max_batch_s, plan->decode_floor_batch1_s);
  EXPECT_GT(plan->max_output_tokens_per_s, 1 / plan->decode_floor_batch1_s);
}

// A mixture-of-experts step reads the experts its tokens go to: Qwen3-30B-A3B's 30.5B
// parameters, of which 3.3B are read at batch 1 (8 of 128 experts a layer).
TEST(CapacityTest, MoeRooflineCountsTheActiveExperts) {
  auto c = LoadModelConfig(testing::SourceRoot() + "/models/configs/qwen3-30b-a3b");
  ASSERT_TRUE(c.ok()) << c.status();
  const Roofline r = DecodeRoofline(*c, 2);
  const double h = 2048, embed = 151936 * h, expert = 3 * 768 * h;
  EXPECT_EQ(r.moe_layers, 48);
  EXPECT_DOUBLE_EQ(r.expert_bytes, 2 * expert);
  EXPECT_DOUBLE_EQ(r.ActiveExperts(1), 8);
  EXPECT_NEAR(r.ActiveExperts(64), 128 * (1 - std::pow(120.0 / 128, 64)), 1e-9);
  EXPECT_GT(r.ActiveExperts(64), 125.9);
  EXPECT_LT(r.ActiveExperts(4096), 128.0 + 1e-9);
  EXPECT_DOUBLE_EQ(WeightBytes(*c, 2) / 2.0, 30532122624.0);
  // Batch 1, no context: everything but the embedding table and 120 experts a layer.
  EXPECT_NEAR((r.StepBytes(1, 0) / 2 + embed) / 1e9, 3.353, 1e-3);
  EXPECT_DOUBLE_EQ(r.StepBytes(64, 1000) - r.StepBytes(64, 0), 1000 * r.kv_bytes_per_token);
  // A prompt token goes through 8 experts a layer: about 2 x 3.3B FLOPs (less the embedding).
  EXPECT_NEAR(PrefillFlopsPerToken(*c, 0) / 2 / 1e9, 3.353 - embed / 1e9, 2e-3);
  // A dense model has no experts to count.
  const Roofline dense = DecodeRoofline(Llama31_8B(), 2);
  EXPECT_EQ(dense.moe_layers, 0);
  EXPECT_DOUBLE_EQ(dense.StepBytes(64, 0), dense.weight_bytes);
}

TEST(CapacityTest, CudaPlanFitsKvIntoWhatTheWeightsLeave) {
  const ModelConfig c = Llama31_8B();
  PlanOptions o;
  o.device = *FindDevice("H100 SXM");
  o.cost_per_hour = 4.0;
  auto plan = PlanCapacity(c, o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  const double budget = 0.9 * 79.6 * (1 << 30);
  EXPECT_DOUBLE_EQ(plan->memory_bytes, budget);
  const double kv_room =
      budget - plan->weight_bytes - plan->activation_bytes - plan->reserved_bytes;
  EXPECT_EQ(plan->num_kv_blocks, static_cast<int>(kv_room / plan->kv_bytes_per_block));
  EXPECT_GE(plan->left_bytes, 0);
  EXPECT_LT(plan->left_bytes, plan->kv_bytes_per_block);
  EXPECT_EQ(plan->kv_tokens, int64_t{plan->num_kv_blocks} * 16);
  EXPECT_NEAR(plan->cost_per_million_output_tokens,
              4.0 / 3600 / plan->max_output_tokens_per_s * 1e6, 1e-12);
  // Two GPUs hold half the weights and half the KV heads each.
  o.tensor_parallel_size = 2;
  auto tp2 = PlanCapacity(c, o);
  ASSERT_TRUE(tp2.ok()) << tp2.status();
  EXPECT_DOUBLE_EQ(tp2->weight_bytes, plan->weight_bytes / 2);
  EXPECT_EQ(tp2->kv_bytes_per_block, plan->kv_bytes_per_block / 2);
  EXPECT_GT(tp2->num_kv_blocks, 2 * plan->num_kv_blocks);
  // An L40S (44 GiB) holds the 15 GiB of weights; at 0.3 utilization it does not.
  o.tensor_parallel_size = 1;
  o.device = *FindDevice("l40s");
  o.gpu_memory_utilization = 0.3;
  EXPECT_EQ(PlanCapacity(c, o).status().code(), absl::StatusCode::kResourceExhausted);
  o.tensor_parallel_size = 3;  // does not divide 8 KV heads
  EXPECT_EQ(PlanCapacity(c, o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CapacityTest, CpuPlanIsTheKvCacheTheEngineAllocates) {
  auto c = LoadModelConfig(testing::TinyModelDir());
  ASSERT_TRUE(c.ok()) << c.status();
  for (double gib : {0.05, 0.25, 1.0}) {
    PlanOptions o;
    o.backend = "cpu";
    o.kv_cache_gib = gib;
    auto plan = PlanCapacity(*c, o);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EngineOptions eo;
    eo.model = testing::TinyModelDir();
    eo.kv_cache_gib = gib;
    eo.quiet = true;
    ModelConfig loaded;
    auto runner = CreateRunner(eo, eo.model, &loaded);
    ASSERT_TRUE(runner.ok()) << runner.status();
    EXPECT_EQ((*runner)->num_kv_blocks(), plan->num_kv_blocks) << gib << " GiB";
    const MemoryUsage m = (*runner)->memory();
    // blocks x block_size x layers x 2 x KV heads x head_dim x 4 bytes, exactly.
    EXPECT_EQ(m.kv_cache, int64_t{plan->num_kv_blocks} * 16 * 8 * 2 * 2 * 64 * 4);
    EXPECT_EQ(m.weights, WeightBytes(*c, 4));
    EXPECT_EQ(m.activations, CpuActivationBytes(*c, eo.max_num_batched_tokens, eo.max_num_seqs));
    EXPECT_EQ((*runner)->kv_bytes_per_block(), KvBytesPerBlock(*c, 16, 4));
  }
}

TEST(CapacityTest, DevicesAndDtypes) {
  ASSERT_NE(FindDevice("H200"), nullptr);
  EXPECT_EQ(FindDevice("h-200")->bandwidth_gbps, 4800);
  EXPECT_EQ(FindDevice("a100")->name, "A100 80GB");
  EXPECT_EQ(FindDevice("tpu"), nullptr);
  EXPECT_EQ(DtypeBytes("bfloat16"), 2);
  EXPECT_EQ(DtypeBytes("float32"), 4);
  EXPECT_EQ(DtypeBytes("fp8"), 1);
  EXPECT_EQ(DtypeBytes("int3"), 0);
}

}  // namespace
}  // namespace sluice
