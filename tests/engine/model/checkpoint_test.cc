// Broken checkpoints and configs are refused with errors that name the file and tensor.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <tuple>

#include "engine/model/config.h"
#include "engine/model/cpu_model.h"
#include "engine/model/mxfp4.h"
#include "engine/model/safetensors.h"
#include "engine/model/weights.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sluice/kernels/dtype.h"
#include "tests/common/fixtures.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A scratch copy of the tiny model whose files a test may break.
class BrokenCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("sluice_ckpt_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors"}) {
      fs::copy_file(fs::path(testing::TinyModelDir()) / f, dir_ / f);
    }
    const std::string bytes = testing::ReadFileOrDie((dir_ / "model.safetensors").string());
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    header_ = json::parse(bytes.substr(8, n));
    data_ = bytes.substr(8 + n);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteSafetensors(const json& header, const std::string& data) {
    const std::string h = header.dump();
    const uint64_t n = h.size();
    std::ofstream out(dir_ / "model.safetensors", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << h << data;
  }
  void WriteFile(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::trunc) << text;
  }
  absl::Status LoadStatus() { return CpuModel::Load(dir_.string()).status(); }

  fs::path dir_;
  json header_;
  std::string data_;
};

void ExpectErrorMentions(const absl::Status& s, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(s.ok());
  for (const std::string& p : parts) {
    EXPECT_NE(s.message().find(p), std::string::npos) << "'" << p << "' not in: " << s.message();
  }
}

TEST_F(BrokenCheckpointTest, IntactCopyLoads) { EXPECT_TRUE(LoadStatus().ok()) << LoadStatus(); }

TEST_F(BrokenCheckpointTest, TruncatedDataIsRefused) {
  WriteSafetensors(header_, data_.substr(0, data_.size() / 2));
  ExpectErrorMentions(LoadStatus(), {"model.safetensors", "outside the data section"});
}

TEST_F(BrokenCheckpointTest, FileShorterThanHeaderSizeIsRefused) {
  std::ofstream(dir_ / "model.safetensors", std::ios::binary | std::ios::trunc) << "abc";
  ExpectErrorMentions(LoadStatus(), {"model.safetensors", "truncated"});
}

TEST_F(BrokenCheckpointTest, HeaderSizePastEndIsRefused) {
  const uint64_t n = 1ull << 40;
  std::ofstream out(dir_ / "model.safetensors", std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << "{}";
  out.close();
  ExpectErrorMentions(LoadStatus(), {"model.safetensors", "header claims"});
}

TEST_F(BrokenCheckpointTest, OffsetsPastTheEndAreRefused) {
  header_["model.norm.weight"]["data_offsets"] = {data_.size() - 2, data_.size() + 510};
  WriteSafetensors(header_, data_);
  ExpectErrorMentions(LoadStatus(), {"model.norm.weight", "outside the data section"});
}

TEST_F(BrokenCheckpointTest, OverlappingTensorsAreRefused) {
  header_["model.norm.weight"]["data_offsets"] =
      header_["model.layers.0.input_layernorm.weight"]["data_offsets"];
  WriteSafetensors(header_, data_);
  ExpectErrorMentions(LoadStatus(), {"overlap"});
}

TEST_F(BrokenCheckpointTest, UnsupportedDtypeIsRefused) {
  header_["model.norm.weight"]["dtype"] = "I64";
  WriteSafetensors(header_, data_);
  ExpectErrorMentions(LoadStatus(), {"model.norm.weight", "unsupported dtype I64"});
}

TEST_F(BrokenCheckpointTest, SizeDisagreeingWithDtypeIsRefused) {
  header_["model.norm.weight"]["dtype"] = "F32";
  WriteSafetensors(header_, data_);
  ExpectErrorMentions(LoadStatus(), {"model.norm.weight", "bytes"});
}

TEST_F(BrokenCheckpointTest, MissingTensorIsRefused) {
  header_.erase("model.layers.3.mlp.up_proj.weight");
  WriteSafetensors(header_, data_);
  ExpectErrorMentions(LoadStatus(), {"missing tensor model.layers.3.mlp.up_proj.weight"});
}

TEST_F(BrokenCheckpointTest, ShapeMismatchWithConfigIsRefused) {
  json config = json::parse(testing::ReadFileOrDie((dir_ / "config.json").string()));
  config["intermediate_size"] = 1024;
  WriteFile("config.json", config.dump());
  ExpectErrorMentions(LoadStatus(),
                      {"model.safetensors", "mlp.gate_proj.weight", "[768, 256]", "[1024, 256]"});
}

TEST_F(BrokenCheckpointTest, HeaderThatIsNotJsonIsRefused) {
  const std::string h = "{\"a\": [1, 2";
  const uint64_t n = h.size();
  std::ofstream out(dir_ / "model.safetensors", std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << h;
  out.close();
  ExpectErrorMentions(LoadStatus(), {"model.safetensors", "not a JSON object"});
}

TEST_F(BrokenCheckpointTest, MalformedConfigIsRefused) {
  WriteFile("config.json", "{\"model_type\": \"llama\", ");
  ExpectErrorMentions(LoadStatus(), {"config.json", "not a JSON object"});
}

TEST_F(BrokenCheckpointTest, ConfigWithWrongTypeNamesTheField) {
  json config = json::parse(testing::ReadFileOrDie((dir_ / "config.json").string()));
  config["hidden_size"] = "256";
  WriteFile("config.json", config.dump());
  ExpectErrorMentions(LoadStatus(), {"config.json", "hidden_size", "integer"});
}

TEST_F(BrokenCheckpointTest, UnknownModelTypeIsRefused) {
  json config = json::parse(testing::ReadFileOrDie((dir_ / "config.json").string()));
  config["model_type"] = "gpt2";
  WriteFile("config.json", config.dump());
  ExpectErrorMentions(LoadStatus(), {"model_type", "gpt2"});
}

TEST_F(BrokenCheckpointTest, MissingCheckpointIsRefused) {
  fs::remove(dir_ / "model.safetensors");
  ExpectErrorMentions(LoadStatus(), {"no model.safetensors"});
}

TEST_F(BrokenCheckpointTest, ShardedCheckpointLoadsThroughIndex) {
  // Split the tensors over two shards and point an index at them.
  json first = {{"__metadata__", {{"format", "pt"}}}}, second = first, index;
  std::string data_a, data_b;
  int i = 0;
  for (auto& [name, entry] : header_.items()) {
    if (name == "__metadata__") continue;
    const auto off = entry["data_offsets"].get<std::vector<uint64_t>>();
    std::string bytes = data_.substr(off[0], off[1] - off[0]);
    json& shard = (i % 2 == 0) ? first : second;
    std::string& data = (i % 2 == 0) ? data_a : data_b;
    shard[name] = {{"dtype", entry["dtype"]},
                   {"shape", entry["shape"]},
                   {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data += bytes;
    index["weight_map"][name] =
        (i % 2 == 0) ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    ++i;
  }
  fs::remove(dir_ / "model.safetensors");
  WriteSafetensors(first, data_a);
  fs::rename(dir_ / "model.safetensors", dir_ / "model-00001-of-00002.safetensors");
  WriteSafetensors(second, data_b);
  fs::rename(dir_ / "model.safetensors", dir_ / "model-00002-of-00002.safetensors");
  WriteFile("model.safetensors.index.json", index.dump());
  auto ckpt = Checkpoint::OpenDir(dir_.string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->num_tensors(), header_.size() - 1);
  EXPECT_TRUE(LoadStatus().ok()) << LoadStatus();
}

TEST(ModelConfigTest, EosIdsAcceptIntOrList) {
  auto c = ParseModelConfig(
      R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
          "num_hidden_layers":1,"num_attention_heads":2,"eos_token_id":[3,7]})",
      "inline");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{3, 7}));
  EXPECT_EQ(c->head_dim, 4);
  EXPECT_EQ(c->num_kv_heads, 2);
}

TEST(ModelConfigTest, TokenIdsOutsideTheVocabularyAreRefused) {
  const std::string base =
      R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
          "num_hidden_layers":1,"num_attention_heads":2,)";
  for (const char* field : {R"("eos_token_id":[3,10])", R"("eos_token_id":-1)",
                            R"("bos_token_id":4294967297)", R"("eos_token_id":1e3)"}) {
    auto c = ParseModelConfig(base + field + "}", "inline/config.json");
    ASSERT_FALSE(c.ok()) << field;
    EXPECT_NE(std::string(c.status().message()).find("inline/config.json"), std::string::npos);
    EXPECT_NE(std::string(c.status().message()).find("_token_id"), std::string::npos) << c.status();
  }
}

TEST(ModelConfigTest, ConstantsMustBeFiniteAndPositive) {
  const std::string base =
      R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
          "num_hidden_layers":1,"num_attention_heads":2,)";
  for (const char* field :
       {R"("rms_norm_eps":0e-5)", R"("rms_norm_eps":-1e-6)", R"("rope_theta":1e300)",
        R"("head_dim":5)", R"("rope_scaling":{"rope_type":"llama3","factor":-8})"}) {
    auto c = ParseModelConfig(base + field + "}", "inline/config.json");
    EXPECT_FALSE(c.ok()) << field;
  }
}

TEST(ModelConfigTest, Qwen2DefaultsToQkvBias) {
  auto c = ParseModelConfig(
      R"({"model_type":"qwen2","vocab_size":10,"hidden_size":8,"intermediate_size":16,
          "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1})",
      "inline");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->attention_bias);
}

// The decoder against values decoded with NumPy from the OCP Microscaling spec
// (mxfp4_reference.py wrote them), NaN scales included.
TEST(Mxfp4Test, DequantizeMatchesTheSpecReference) {
  const json ref =
      testing::ReadJsonOrDie(testing::SourceRoot() + "/tests/engine/model/mxfp4_reference.json");
  for (int c = 0; c < 16; ++c) EXPECT_EQ(E2m1Value(c), ref["e2m1"][c].get<float>()) << c;
  const auto blocks = ref["blocks"].get<std::vector<uint8_t>>();
  const auto scales = ref["scales"].get<std::vector<uint8_t>>();
  const int64_t rows = ref["rows"], cols = ref["cols"];
  const std::vector<float> got = DequantizeMxfp4(blocks.data(), scales.data(), rows, cols);
  ASSERT_EQ(got.size(), ref["values"].size());
  int nans = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (ref["values"][i].is_null()) {
      EXPECT_TRUE(std::isnan(got[i])) << i;
      ++nans;
    } else {
      EXPECT_EQ(got[i], ref["values"][i].get<double>()) << i;
    }
  }
  EXPECT_EQ(nans, 32);
}

// gpt-oss's experts stored as MXFP4 (blocks and scales, as published) load into the same
// weights as the same values stored in bf16 (the layout of the variant fixture).
TEST(Mxfp4Test, GptOssMxfp4ExpertsLoadAsTheirBf16Values) {
  const std::string src = testing::SharedDir() + "/fixtures/variants/gpt-oss";
  auto config = LoadModelConfig(src);
  ASSERT_TRUE(config.ok()) << config.status();
  const int64_t e = config->num_experts, h = config->hidden_size,
                mi = config->moe_intermediate_size;
  const std::string bytes = testing::ReadFileOrDie(src + "/model.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const json header = json::parse(bytes.substr(8, n));
  const std::string data = bytes.substr(8 + n);
  std::mt19937 rng(7);
  // Two checkpoints: experts as MXFP4, and as bf16 holding the decoded values.
  json quant = json::object(), plain = json::object();
  std::string quant_data, plain_data;
  auto add = [](json& h, std::string& d, const std::string& name, const char* dtype,
                std::vector<int64_t> shape, const std::string& raw) {
    h[name] = {
        {"dtype", dtype}, {"shape", shape}, {"data_offsets", {d.size(), d.size() + raw.size()}}};
    d += raw;
  };
  for (const auto& [name, t] : header.items()) {
    if (name == "__metadata__") continue;
    const bool expert = name.find("experts.gate_up_proj") != std::string::npos ||
                        name.find("experts.down_proj") != std::string::npos;
    if (expert && name.find("_bias") == std::string::npos) continue;
    const std::string raw =
        data.substr(t["data_offsets"][0].get<size_t>(),
                    t["data_offsets"][1].get<size_t>() - t["data_offsets"][0].get<size_t>());
    const auto shape = t["shape"].get<std::vector<int64_t>>();
    add(quant, quant_data, name, t["dtype"].get<std::string>().c_str(), shape, raw);
    add(plain, plain_data, name, t["dtype"].get<std::string>().c_str(), shape, raw);
  }
  auto bf16 = [](const std::vector<float>& v) {
    std::string raw(v.size() * 2, '\0');
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t bits = kernels::FloatToBf16(v[i]).bits;
      std::memcpy(raw.data() + 2 * i, &bits, 2);
    }
    return raw;
  };
  for (int layer = 0; layer < config->num_layers; ++layer) {
    const std::string p = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    // (name, out, in): stored as [experts, out, in] in MXFP4, [experts, in, out] in bf16.
    for (const auto& [name, out, in] :
         {std::tuple<std::string, int64_t, int64_t>{"gate_up_proj", 2 * mi, h},
          std::tuple<std::string, int64_t, int64_t>{"down_proj", h, mi}}) {
      std::string blocks(static_cast<size_t>(e * out * in / 2), '\0'),
          scales(static_cast<size_t>(e * out * in / 32), '\0');
      for (char& b : blocks) b = static_cast<char>(rng());
      for (char& s : scales) s = static_cast<char>(120 + rng() % 8);
      add(quant, quant_data, p + name + "_blocks", "U8", {e, out, in / 32, 16}, blocks);
      add(quant, quant_data, p + name + "_scales", "U8", {e, out, in / 32}, scales);
      const std::vector<float> v =
          DequantizeMxfp4(reinterpret_cast<const uint8_t*>(blocks.data()),
                          reinterpret_cast<const uint8_t*>(scales.data()), e * out, in);
      std::vector<float> t(v.size());  // [experts, in, out]
      for (int64_t x = 0; x < e; ++x) {
        for (int64_t o = 0; o < out; ++o) {
          for (int64_t k = 0; k < in; ++k) t[(x * in + k) * out + o] = v[(x * out + o) * in + k];
        }
      }
      add(plain, plain_data, p + name, "BF16", {e, in, out}, bf16(t));
    }
  }
  auto write = [&](const std::string& tag, const json& h, const std::string& d) {
    const fs::path dir = fs::temp_directory_path() / ("sluice_mxfp4_" + tag);
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(src + "/config.json", dir / "config.json");
    const std::string text = h.dump();
    const uint64_t len = text.size();
    std::ofstream f(dir / "model.safetensors", std::ios::binary);
    f.write(reinterpret_cast<const char*>(&len), 8);
    f << text << d;
    return dir;
  };
  const fs::path qdir = write("quant", quant, quant_data), pdir = write("plain", plain, plain_data);
  auto qckpt = Checkpoint::OpenDir(qdir.string());
  auto pckpt = Checkpoint::OpenDir(pdir.string());
  ASSERT_TRUE(qckpt.ok() && pckpt.ok());
  auto qw = LoadWeights(**qckpt, *config);
  auto pw = LoadWeights(**pckpt, *config);
  ASSERT_TRUE(qw.ok()) << qw.status();
  ASSERT_TRUE(pw.ok()) << pw.status();
  for (int layer = 0; layer < config->num_layers; ++layer) {
    EXPECT_EQ(qw->layers[layer].expert_gate_up, pw->layers[layer].expert_gate_up);
    EXPECT_EQ(qw->layers[layer].expert_down, pw->layers[layer].expert_down);
    EXPECT_EQ(qw->layers[layer].expert_gate_up_bias, pw->layers[layer].expert_gate_up_bias);
  }
  fs::remove_all(qdir);
  fs::remove_all(pdir);
}

TEST(ModelConfigTest, UnsupportedRopeTypeIsRefused) {
  auto c = ParseModelConfig(
      R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
          "num_hidden_layers":1,"num_attention_heads":2,
          "rope_scaling":{"rope_type":"dynamic","factor":4.0}})",
      "inline");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("dynamic"), std::string::npos);
}

// gpt-oss's fields, read as its architecture defines them, and their errors named.
TEST(ModelConfigTest, GptOssFieldsAndTheirErrors) {
  const std::string base =
      R"({"model_type":"gpt_oss","vocab_size":10,"hidden_size":8,"intermediate_size":16,
          "num_hidden_layers":3,"num_attention_heads":2,"num_local_experts":4,
          "num_experts_per_tok":2,"attention_bias":true,"swiglu_limit":5.0,)";
  auto c = ParseModelConfig(base + R"("sliding_window":8,
      "rope_scaling":{"rope_type":"yarn","factor":8.0,"original_max_position_embeddings":64}})",
                            "inline");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_experts, 4);
  EXPECT_EQ(c->moe_intermediate_size, 16);
  EXPECT_TRUE(c->gpt_oss_moe && c->attention_sinks && c->o_proj_bias);
  EXPECT_FLOAT_EQ(c->swiglu_limit, 5.0f);
  // No layer_types: sliding first, then alternating, as transformers defaults them.
  EXPECT_EQ(c->layer_window, (std::vector<int>{8, 0, 8}));
  EXPECT_FLOAT_EQ(c->rope.yarn_factor, 8.0f);
  EXPECT_EQ(c->rope.yarn_original_max_position, 64);
  EXPECT_TRUE(c->rope.yarn_truncate);
  auto bad_types = ParseModelConfig(
      base + R"("sliding_window":8,"layer_types":["full_attention","local"]})", "inline");
  ASSERT_FALSE(bad_types.ok());
  EXPECT_NE(bad_types.status().message().find("layer_types"), std::string::npos);
  auto no_window = ParseModelConfig(base + R"("layer_types":["sliding_attention","full_attention",
                                                   "full_attention"]})",
                                    "inline");
  ASSERT_FALSE(no_window.ok());
  EXPECT_NE(no_window.status().message().find("sliding_window"), std::string::npos);
  auto too_many = ParseModelConfig(
      R"({"model_type":"qwen3_moe","vocab_size":10,"hidden_size":8,"intermediate_size":16,
          "num_hidden_layers":1,"num_attention_heads":2,"num_experts":2,
          "num_experts_per_tok":3,"moe_intermediate_size":4})",
      "inline");
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("num_experts_per_tok"), std::string::npos);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

constexpr char kDense[] =
    R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
        "num_hidden_layers":1,"num_attention_heads":2,"quantization_config":)";

absl::StatusOr<ModelConfig> WithQuant(const std::string& quant) {
  return ParseModelConfig(std::string(kDense) + quant + "}", "inline/config.json");
}

// A compressed-tensors config of one group with these weights and inputs.
std::string Compressed(const std::string& weights, const std::string& inputs) {
  return R"({"quant_method":"compressed-tensors","format":"float-quantized",
             "config_groups":{"group_0":{"targets":["Linear"],"weights":)" +
         weights + R"(,"input_activations":)" + inputs + "}}}";
}

constexpr char kChannel[] =
    R"({"num_bits":8,"type":"float","strategy":"channel","dynamic":false,"symmetric":true})";
constexpr char kToken[] =
    R"({"num_bits":8,"type":"float","strategy":"token","dynamic":true,"symmetric":true})";

TEST(Fp8ConfigTest, BothPublishedLayoutsParse) {
  using W = Fp8Scheme::Weights;
  using I = Fp8Scheme::Inputs;
  auto c = WithQuant(Compressed(kChannel, kToken));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->fp8.enabled);
  EXPECT_FALSE(c->fp8.on_load);
  EXPECT_EQ(c->fp8.layout, "compressed-tensors");
  EXPECT_EQ(c->fp8.weights, W::kChannel);
  EXPECT_EQ(c->fp8.inputs, I::kPerToken);
  EXPECT_NE(c->Summary().find("FP8 weights (compressed-tensors)"), std::string::npos);
  c = WithQuant(Compressed(R"({"num_bits":8,"type":"float","strategy":"tensor"})",
                           R"({"num_bits":8,"type":"float","strategy":"tensor","dynamic":false})"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fp8.weights, W::kTensor);
  EXPECT_EQ(c->fp8.inputs, I::kStatic);
  c = WithQuant(Compressed(kChannel, "null"));  // FP8 weights, 16-bit inputs
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fp8.inputs, I::kNone);
  c = WithQuant(R"({"quant_method":"fp8","fmt":"e4m3","activation_scheme":"dynamic",
                    "weight_block_size":[128,128]})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fp8.layout, "fp8");
  EXPECT_EQ(c->fp8.weights, W::kBlock);
  EXPECT_EQ(c->fp8.inputs, I::kPerTokenGroup);
  EXPECT_EQ(c->fp8.block_n, 128);
  EXPECT_EQ(c->fp8.block_k, 128);
  EXPECT_EQ(c->fp8.input_group, 128);
  c = WithQuant(R"({"quant_method":"fp8","activation_scheme":"static"})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->fp8.weights, W::kTensor);
  EXPECT_EQ(c->fp8.inputs, I::kStatic);
  // gpt-oss's mxfp4 experts are read from their tensors; no FP8.
  c = ParseModelConfig(R"({"model_type":"gpt_oss","vocab_size":10,"hidden_size":8,
      "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,
      "num_local_experts":2,"quantization_config":{"quant_method":"mxfp4"}})",
                       "inline");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(c->fp8.enabled);
}

TEST(Fp8ConfigTest, WhatIsNotFp8IsRefusedNamingTheField) {
  const std::string int4 = R"({"num_bits":4,"type":"int","strategy":"group","group_size":128})";
  const std::string per_tensor_dynamic =
      R"({"num_bits":8,"type":"float","strategy":"tensor","dynamic":true})";
  const std::pair<std::string, std::string> cases[] = {
      {R"({"quant_method":"awq","bits":4})", "\"awq\""},
      {R"({"quant_method":"gptq"})", "quant_method"},
      {R"({"bits":4})", "quant_method"},
      {R"("fp8")", "quantization_config"},
      {R"({"quant_method":"fp8","fmt":"e5m2"})", "fmt"},
      {R"({"quant_method":"fp8","activation_scheme":"sometimes"})", "activation_scheme"},
      {R"({"quant_method":"fp8","weight_block_size":[128,0]})", "weight_block_size"},
      {R"({"quant_method":"fp8","weight_block_size":128})", "weight_block_size"},
      {R"({"quant_method":"fp8","activation_scheme":"static","weight_block_size":[128,128]})",
       "activation_scheme"},
      {Compressed(int4, "null"), "weights"},
      {Compressed(kChannel, per_tensor_dynamic), "input_activations"},
      {Compressed(R"({"num_bits":8,"type":"float","strategy":"channel","symmetric":false})",
                  kToken),
       "symmetric"},
      {Compressed(R"({"num_bits":8,"type":"float","strategy":"row"})", kToken), "strategy"},
      // Wrong types are refused, not thrown.
      {Compressed(R"({"num_bits":"8","type":"float","strategy":"channel"})", kToken), "weights"},
      {Compressed(kChannel, R"({"num_bits":8,"type":"float","strategy":"token","dynamic":"yes"})"),
       "input_activations"},
      {Compressed(R"({"num_bits":8,"type":"float","strategy":"channel","dynamic":1})", kToken),
       "weights.dynamic"},
      {R"({"quant_method":"compressed-tensors","format":"float-quantized","config_groups":{"g":[1]}})",
       "config_groups.g"},
      {R"({"quant_method":"compressed-tensors","format":"pack-quantized","config_groups":{}})",
       "format"},
      {R"({"quant_method":"compressed-tensors","format":"float-quantized","config_groups":{}})",
       "config_groups"},
  };
  for (const auto& [quant, field] : cases) {
    auto c = WithQuant(quant);
    ASSERT_FALSE(c.ok()) << quant;
    EXPECT_NE(c.status().message().find("inline/config.json"), std::string::npos) << c.status();
    EXPECT_NE(c.status().message().find(field), std::string::npos) << field << ": " << c.status();
  }
  // Two groups must quantize their inputs alike.
  auto c = WithQuant(R"({"quant_method":"compressed-tensors","format":"float-quantized",
      "config_groups":{"a":{"targets":["Linear"],"weights":)" +
                     std::string(kChannel) + R"(,"input_activations":)" + kToken +
                     R"(},"b":{"targets":["Linear"],"weights":)" + kChannel +
                     R"(,"input_activations":null}}})");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("alike"), std::string::npos) << c.status();
  // FP8 experts are not read yet.
  c = ParseModelConfig(R"({"model_type":"qwen3_moe","vocab_size":10,"hidden_size":8,
      "intermediate_size":16,"num_hidden_layers":1,"num_attention_heads":2,"num_experts":2,
      "moe_intermediate_size":8,"quantization_config":{"quant_method":"fp8"}})",
                       "inline");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("experts"), std::string::npos) << c.status();
}

TEST(Fp8ConfigTest, QuantizationFlagQuantizesSixteenBitCheckpointsOnLoad) {
  auto c = LoadModelConfig(testing::TinyModelDir(), "fp8");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->fp8.enabled && c->fp8.on_load);
  EXPECT_EQ(c->fp8.weights, Fp8Scheme::Weights::kChannel);
  EXPECT_EQ(c->fp8.inputs, Fp8Scheme::Inputs::kPerToken);
  c = LoadModelConfig(testing::TinyModelDir(), "");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->fp8.enabled);
  c = LoadModelConfig(testing::TinyModelDir(), "int4");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("--quantization int4"), std::string::npos) << c.status();
  // The quantized tiny model differs from the plain one, but only by E4M3 rounding.
  auto plain = LoadModelConfig(testing::TinyModelDir());
  auto ckpt = Checkpoint::OpenDir(testing::TinyModelDir());
  ASSERT_TRUE(plain.ok() && ckpt.ok());
  c = LoadModelConfig(testing::TinyModelDir(), "fp8");
  auto q = LoadWeights(**ckpt, *c);
  auto p = LoadWeights(**ckpt, *plain);
  ASSERT_TRUE(q.ok() && p.ok());
  const std::vector<float>&qw = q->layers[0].gate_up, &pw = p->layers[0].gate_up;
  ASSERT_EQ(qw.size(), pw.size());
  size_t changed = 0;
  for (size_t i = 0; i < qw.size(); ++i) {
    changed += qw[i] != pw[i];
    ASSERT_LE(std::fabs(qw[i] - pw[i]), std::fabs(pw[i]) / 16 + 1e-6f) << i;
  }
  EXPECT_GT(changed, qw.size() / 2);
  EXPECT_EQ(q->embed, p->embed);  // embeddings and norms stay as stored
  EXPECT_EQ(q->layers[0].quant.down.mode, InputQuant::Mode::kPerToken);
  EXPECT_EQ(p->layers[0].quant.down.mode, InputQuant::Mode::kNone);
}

}  // namespace
}  // namespace sluice
