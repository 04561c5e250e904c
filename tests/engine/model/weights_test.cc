// The fused weight layout and --random-weights: slot sizes from the config, the same
// random model for the same seed, values already bf16, ranges as documented.
#include <cmath>

#include "engine/model/config.h"
#include "engine/model/safetensors.h"
#include "engine/model/weights.h"
#include "gtest/gtest.h"
#include "sluice/kernels/dtype.h"
#include "tests/common/fixtures.h"

namespace sluice {
namespace {

ModelConfig TinyConfig() {
  auto c = LoadModelConfig(testing::TinyModelDir());
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(WeightsTest, CheckpointFillsEverySlotToItsSize) {
  const ModelConfig c = TinyConfig();
  auto ckpt = Checkpoint::OpenDir(testing::TinyModelDir());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  auto w = LoadWeights(**ckpt, c);
  ASSERT_TRUE(w.ok()) << w.status();
  for (int s = 0; s < kNumWeightSlots; ++s) {
    const auto slot = static_cast<WeightSlot>(s);
    const int64_t want = HasSlot(c, slot) ? SlotElements(c, slot) : 0;
    EXPECT_EQ(static_cast<int64_t>(w->Slot(0, slot).size()), want) << "slot " << s;
  }
  EXPECT_FALSE(HasSlot(c, WeightSlot::kLmHead));  // tied
  EXPECT_EQ(&w->LmHead(), &w->embed);
}

TEST(WeightsTest, RandomWeightsAreDeterministicBf16AndInRange) {
  const ModelConfig c = TinyConfig();
  auto a = RandomWeights(c, 3), b = RandomWeights(c, 3), other = RandomWeights(c, 4);
  ASSERT_TRUE(a.ok() && b.ok() && other.ok());
  EXPECT_EQ(a->layers[2].qkv, b->layers[2].qkv);
  EXPECT_EQ(a->embed, b->embed);
  EXPECT_NE(a->layers[2].qkv, other->layers[2].qkv);
  EXPECT_NE(a->layers[1].gate_up, a->layers[2].gate_up);  // each layer its own stream
  for (int s = 0; s < kNumWeightSlots; ++s) {
    const auto slot = static_cast<WeightSlot>(s);
    if (!HasSlot(c, slot)) continue;
    const std::vector<float>& v = a->Slot(IsLayerSlot(slot) ? 1 : 0, slot);
    ASSERT_EQ(static_cast<int64_t>(v.size()), SlotElements(c, slot)) << "slot " << s;
    const RandomRange r = RandomRangeOf(c, slot);
    double sum_sq = 0;
    for (float x : v) {
      // bf16-exact, inside the range (rounding may reach its ends).
      ASSERT_EQ(x, kernels::Bf16ToFloat(kernels::FloatToBf16(x)));
      ASSERT_GE(x, kernels::Bf16ToFloat(kernels::FloatToBf16(r.lo)));
      ASSERT_LE(x, kernels::Bf16ToFloat(kernels::FloatToBf16(r.hi)));
      sum_sq += double{x} * x;
    }
    if (slot == WeightSlot::kDownProj) {
      // Variance 1 / fan_in keeps activations in range at any depth.
      EXPECT_NEAR(sum_sq / v.size() * c.intermediate_size, 1.0, 0.05);
    }
  }
}

}  // namespace
}  // namespace sluice
