// Tensor parallelism on the CPU backend: the in-process communicator's collectives
// (rank-ordered sums, aborts, timeouts), the sharding's refusals and head placement, and
// the sharded models against transformers' goldens and against tp = 1 (greedy ids equal,
// logits within 1e-4), including replicated KV heads and a vocabulary the ranks do not
// divide evenly.
#include "engine/model/tensor_parallel.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "engine/model/cpu_model.h"
#include "engine/model/cpu_model_group.h"
#include "engine/model/generate.h"
#include "engine/parallel/communicator.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/fixtures.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;
using testing::ReadJsonOrDie;
using testing::SharedDir;
using testing::TinyModelDir;

// Runs fn(rank) on one thread per communicator and returns each rank's status.
template <class Fn>
std::vector<absl::Status> OnRanks(std::vector<std::unique_ptr<Communicator>>& comms, Fn fn) {
  std::vector<absl::Status> status(comms.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < comms.size(); ++r) {
    threads.emplace_back([&, r] { status[r] = fn(static_cast<int>(r), *comms[r]); });
  }
  for (auto& t : threads) t.join();
  return status;
}

TEST(CommunicatorTest, AllReduceSumsInRankOrderOnEveryRank) {
  auto comms = MakeThreadCommunicators(3);
  // Float addition does not associate: (1e8 + 1) - 1e8 = 0 but 1e8 + (1 - 1e8) = 8.
  const float values[3][2] = {{1e8f, 1.0f}, {1.0f, -1e8f}, {-1e8f, 1e8f}};
  std::vector<std::vector<float>> bufs(3);
  const auto status = OnRanks(comms, [&](int r, Communicator& c) {
    bufs[r] = {values[r][0], values[r][1], float(r)};
    return c.AllReduceSum(bufs[r].data(), 3, CommDtype::kFloat32);
  });
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(status[r].ok()) << status[r];
    EXPECT_EQ(comms[r]->rank(), r);
    EXPECT_EQ(comms[r]->size(), 3);
    const float want0 = (values[0][0] + values[1][0]) + values[2][0];
    const float want1 = (values[0][1] + values[1][1]) + values[2][1];
    EXPECT_EQ(std::memcmp(&bufs[r][0], &want0, 4), 0) << "rank " << r << " got " << bufs[r][0];
    EXPECT_EQ(std::memcmp(&bufs[r][1], &want1, 4), 0) << "rank " << r << " got " << bufs[r][1];
    EXPECT_EQ(bufs[r][2], 3.0f);
  }
  EXPECT_EQ(bufs[0][0], 0.0f);  // rank order: (1e8 + 1) - 1e8
}

TEST(CommunicatorTest, AllGatherAndBroadcast) {
  auto comms = MakeThreadCommunicators(4);
  std::vector<std::vector<float>> gathered(4, std::vector<float>(8));
  std::vector<std::vector<float>> root(4);
  const auto status = OnRanks(comms, [&](int r, Communicator& c) {
    const float mine[2] = {float(10 * r), float(10 * r + 1)};
    if (absl::Status s = c.AllGather(mine, gathered[r].data(), 2, CommDtype::kFloat32); !s.ok()) {
      return s;
    }
    root[r] = {float(r), float(-r)};
    if (absl::Status s = c.Broadcast(root[r].data(), 2 * sizeof(float), 2); !s.ok()) return s;
    return c.Barrier();
  });
  for (int r = 0; r < 4; ++r) {
    ASSERT_TRUE(status[r].ok()) << status[r];
    EXPECT_EQ(gathered[r], (std::vector<float>{0, 1, 10, 11, 20, 21, 30, 31}));
    EXPECT_EQ(root[r], (std::vector<float>{2, -2}));
  }
  EXPECT_FALSE(comms[0]->AllReduceSum(nullptr, 0, CommDtype::kBfloat16).ok());  // host fp32 only
}

// A rank that fails aborts the group: the others' waits end with its error, and every
// later collective fails at once.
TEST(CommunicatorTest, AbortEndsEveryRanksWait) {
  auto comms = MakeThreadCommunicators(3, 60s);
  const auto status = OnRanks(comms, [&](int r, Communicator& c) {
    if (r == 1) {
      c.Abort(absl::InternalError("rank 1 lost its device"));
      return absl::InternalError("rank 1 lost its device");
    }
    float x = 1.0f;
    return c.AllReduceSum(&x, 1, CommDtype::kFloat32);
  });
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(status[r].code(), absl::StatusCode::kInternal) << status[r];
    EXPECT_NE(status[r].message().find("rank 1 lost its device"), std::string::npos);
  }
  EXPECT_FALSE(comms[0]->Barrier().ok());
  EXPECT_EQ(comms[2]->status().message(), "rank 1 lost its device");
}

TEST(CommunicatorTest, ARankThatNeverComesTimesOutTheGroup) {
  auto comms = MakeThreadCommunicators(2, 50ms);
  const absl::Status s = comms[0]->Barrier();  // rank 1 never arrives
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_NE(s.message().find("rank 0 waited 50 ms"), std::string::npos) << s;
  EXPECT_EQ(comms[1]->Barrier().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST(CommunicatorTest, SingleRankIsTheIdentity) {
  auto c = MakeSingleRankCommunicator();
  std::vector<float> x = {1, 2}, y(2);
  ASSERT_TRUE(c->AllReduceSum(x.data(), 2, CommDtype::kFloat32).ok());
  ASSERT_TRUE(c->AllGather(x.data(), y.data(), 2, CommDtype::kFloat32).ok());
  EXPECT_EQ(x, (std::vector<float>{1, 2}));
  EXPECT_EQ(y, x);
}

ModelConfig ConfigOf(const std::string& dir) {
  auto c = LoadModelConfig(dir);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

TEST(ShardingTest, RefusesSizesThatDoNotSplitTheModel) {
  const ModelConfig tiny = ConfigOf(TinyModelDir());  // 4 q heads, 2 KV heads, 768 inter
  EXPECT_TRUE(CheckTensorParallel(tiny, 1).ok());
  EXPECT_TRUE(CheckTensorParallel(tiny, 2).ok());
  EXPECT_TRUE(CheckTensorParallel(tiny, 4).ok());
  const absl::Status three = CheckTensorParallel(tiny, 3);
  EXPECT_EQ(three.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(three.message(), "--tensor-parallel-size 3 does not divide the model's 4 query heads");
  EXPECT_FALSE(CheckTensorParallel(tiny, 0).ok());
  const ModelConfig llama3 = ConfigOf(SharedDir() + "/fixtures/variants/llama3-rope-untied");
  EXPECT_NE(CheckTensorParallel(llama3, 4).message().find("2 query heads"), std::string::npos);
  ModelConfig odd = tiny;
  odd.intermediate_size = 770;
  EXPECT_NE(CheckTensorParallel(odd, 4).message().find("intermediate size 770"), std::string::npos);
}

// Four ranks over two KV heads: each KV head on the two ranks whose query heads read it.
TEST(ShardingTest, ReplicatesKvHeadsBeyondTheirCount) {
  const ModelConfig tiny = ConfigOf(TinyModelDir());
  const int want_kv[4] = {0, 0, 1, 1};
  for (int r = 0; r < 4; ++r) {
    const TpShard s = PlanShard(tiny, r, 4);
    EXPECT_EQ(s.q_head_begin, r);
    EXPECT_EQ(s.num_q_heads, 1);
    EXPECT_EQ(s.kv_head_begin, want_kv[r]);
    EXPECT_EQ(s.num_kv_heads, 1);
    EXPECT_EQ(s.intermediate, 192);
    EXPECT_EQ(s.vocab_begin, r * 1024);
    EXPECT_EQ(s.vocab_end, (r + 1) * 1024);
  }
  EXPECT_EQ(KvReplication(tiny, 4), 2);
  EXPECT_EQ(KvReplication(tiny, 2), 1);
  const TpShard half = PlanShard(tiny, 1, 2);
  EXPECT_EQ(half.kv_head_begin, 1);
  EXPECT_EQ(half.num_kv_heads, 1);
}

// Greedy ids of every golden case through `tp` ranks, and step 0's logits against tp = 1
// (1e-4) and against transformers (1e-3).
void CheckGoldenAt(const std::string& dir, const std::string& golden_path, int tp) {
  SCOPED_TRACE(dir + " at tp " + std::to_string(tp));
  auto single = CpuModel::Load(dir);
  ASSERT_TRUE(single.ok()) << single.status();
  const nlohmann::json golden = ReadJsonOrDie(golden_path);
  int longest = 0;
  for (const auto& c : golden["cases"]) {
    longest = std::max<int>(longest, c["prompt_ids"].size() + c["greedy_ids"].size());
  }
  auto group = CpuModelGroup::Load(dir, tp, (longest + 15) / 16, 16);
  ASSERT_TRUE(group.ok()) << group.status();
  ASSERT_EQ((*group)->size(), tp);
  for (const auto& c : golden["cases"]) {
    const auto prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    const auto want = c["greedy_ids"].get<std::vector<int32_t>>();
    const auto want_last = c["last_logits"].get<std::vector<float>>();
    GenerateOptions opts;
    opts.max_tokens = static_cast<int>(want.size());
    opts.ignore_eos = true;
    std::vector<float> alone;
    auto one = Generate(**single, prompt, opts, nullptr, [&](int step, std::span<const float> l) {
      if (step == 0) alone.assign(l.begin(), l.end());
    });
    ASSERT_TRUE(one.ok()) << one.status();
    float vs_alone = 0, vs_reference = 0;
    auto sharded =
        Generate(**group, prompt, opts, nullptr, [&](int step, std::span<const float> l) {
          if (step != 0) return;
          ASSERT_EQ(l.size(), alone.size());
          for (size_t i = 0; i < l.size(); ++i) {
            vs_alone = std::max(vs_alone, std::abs(l[i] - alone[i]));
            vs_reference = std::max(vs_reference, std::abs(l[i] - want_last[i]));
          }
        });
    ASSERT_TRUE(sharded.ok()) << sharded.status();
    EXPECT_EQ(sharded->output_ids, want);
    EXPECT_EQ(sharded->output_ids, one->output_ids);
    EXPECT_LT(vs_alone, 1e-4f);
    EXPECT_LT(vs_reference, 1e-3f);
  }
}

TEST(TensorParallelGoldenTest, TinyModelAtTwoAndFourRanks) {
  CheckGoldenAt(TinyModelDir(), SharedDir() + "/fixtures/golden_tiny.json", 2);
  CheckGoldenAt(TinyModelDir(), SharedDir() + "/fixtures/golden_tiny.json", 4);  // KV replicated
}

TEST(TensorParallelGoldenTest, Qwen2BiasTiedAtTwoAndFourRanks) {
  const std::string dir = SharedDir() + "/fixtures/variants/qwen2-bias-tied";
  CheckGoldenAt(dir, dir + "/golden.json", 2);
  CheckGoldenAt(dir, dir + "/golden.json", 4);
}

// Two query heads over one KV head: tp = 2 replicates the KV head; tp = 4 is refused above.
TEST(TensorParallelGoldenTest, Llama3RopeUntiedAtTwoRanks) {
  const std::string dir = SharedDir() + "/fixtures/variants/llama3-rope-untied";
  CheckGoldenAt(dir, dir + "/golden.json", 2);
}

TEST(TensorParallelGoldenTest, Qwen3AndMixturesOfExperts) {
  for (const char* name : {"qwen3-dense", "qwen3-moe", "gpt-oss"}) {
    const std::string dir = SharedDir() + "/fixtures/variants/" + name;
    CheckGoldenAt(dir, dir + "/golden.json", 2);
    CheckGoldenAt(dir, dir + "/golden.json", 4);
  }
}

// A vocabulary of 4093 over 4 ranks (slices of 1024, the last of 1021): the padded
// all-gather lays the logits out as one rank would.
TEST(TensorParallelGoldenTest, UnevenVocabularyMatchesOneRank) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sluice_tp_vocab_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  nlohmann::json config = ReadJsonOrDie(TinyModelDir() + "/config.json");
  config["vocab_size"] = 4093;
  std::ofstream(dir / "config.json") << config.dump();
  auto single = CpuModel::LoadRandom(dir.string(), 5);
  ASSERT_TRUE(single.ok()) << single.status();
  auto group = CpuModelGroup::Load(dir.string(), 4, 4, 16, /*random_weights=*/true, 5);
  ASSERT_TRUE(group.ok()) << group.status();
  const std::vector<int32_t> prompt = {1, 4092, 17, 2048, 3071, 1023, 1024};
  GenerateOptions opts;
  opts.max_tokens = 8;
  opts.ignore_eos = true;
  std::vector<std::vector<float>> alone;
  auto one = Generate(**single, prompt, opts, nullptr, [&](int, std::span<const float> l) {
    alone.emplace_back(l.begin(), l.end());
  });
  ASSERT_TRUE(one.ok()) << one.status();
  float worst = 0;
  auto sharded = Generate(**group, prompt, opts, nullptr, [&](int step, std::span<const float> l) {
    ASSERT_EQ(l.size(), 4093u);
    for (size_t i = 0; i < l.size(); ++i) {
      worst = std::max(worst, std::abs(l[i] - alone[step][i]));
    }
  });
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  EXPECT_EQ(sharded->output_ids, one->output_ids);
  EXPECT_LT(worst, 1e-4f);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice
