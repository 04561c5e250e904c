// Grammar compile and per-token mask times on one thread, for the side-by-side with
// xgrammar (bench/grammar/compare.sh). For each JSON Schema of a suite: compile it
// against the tokenizer's vocabulary, then walk `steps` tokens (each step: fill the mask,
// timed, then accept a seeded random allowed token, preferring those that keep the
// answer short), then replay the walk as a second request with the same schema. Writes
// the vocabulary's token bytes and the walks, so that the peer replays exactly the same
// states, and the timings as JSON.
//   grammar_bench TOKENIZER_DIR SCHEMAS.json OUT_DIR [STEPS=64]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "engine/grammar/compile.h"
#include "engine/grammar/matcher.h"
#include "nlohmann/json.hpp"
#include "server/tokenizer/tokenizer.h"

using Clock = std::chrono::steady_clock;

static double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: grammar_bench TOKENIZER_DIR SCHEMAS.json OUT_DIR [STEPS]\n");
    return 2;
  }
  const std::string out_dir = argv[3];
  const int steps = argc > 4 ? std::atoi(argv[4]) : 64;
  auto tok = sluice::Tokenizer::FromDir(argv[1]);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", std::string(tok.status().message()).c_str());
    return 2;
  }
  std::vector<std::string> bytes;
  nlohmann::json vocab_out = nlohmann::json::array();
  for (int32_t id = 0; id < (*tok)->vocab_size(); ++id) {
    bytes.push_back((*tok)->TokenBytes(id));
    nlohmann::json b = nlohmann::json::array();
    for (unsigned char c : bytes.back()) b.push_back(c);
    vocab_out.push_back(std::move(b));
  }
  std::vector<int32_t> eos = (*tok)->eos_ids();
  const auto t_vocab = Clock::now();
  auto vocab = std::make_shared<const sluice::grammar::Vocabulary>(bytes, eos);
  const double vocab_ms = Us(t_vocab, Clock::now()) / 1000;
  // Once per tokenizer, as the server does at load: the tokens as JSON string contents.
  const auto t_strings = Clock::now();
  vocab->json_strings();
  const double strings_ms = Us(t_strings, Clock::now()) / 1000;
  std::ofstream(out_dir + "/vocab.json") << nlohmann::json{{"tokens", vocab_out}, {"eos", eos}};
  std::ifstream in(argv[2]);
  const nlohmann::json suite = nlohmann::json::parse(in);
  nlohmann::json results = nlohmann::json::array();
  std::mt19937_64 rng(20261202);
  const size_t words = (static_cast<size_t>(vocab->size()) + 31) / 32;
  std::vector<uint32_t> mask(words);
  std::fprintf(stderr, "vocabulary: %d tokens, trie built in %.1f ms, string table in %.1f ms\n",
               vocab->size(), vocab_ms, strings_ms);
  int done = 0;
  for (const auto& item : suite) {
    const std::string schema = item["schema"].dump();
    const auto t0 = Clock::now();
    auto g = sluice::grammar::CompileJsonSchema(schema);
    if (!g.ok()) {
      std::fprintf(stderr, "%s: %s\n", item["name"].get<std::string>().c_str(),
                   std::string(g.status().message()).c_str());
      continue;
    }
    // One automaton per schema, as the server keeps one per cached constraint: a second
    // request with the same schema (the replay below) finds its states built. Its making
    // (the tables of its byte runs included) counts in the compile.
    auto automaton = std::make_shared<sluice::grammar::Automaton>(*g, vocab);
    const double compile_us = Us(t0, Clock::now());
    sluice::grammar::Matcher m(automaton);
    std::vector<double> mask_us;
    std::vector<int32_t> walk;
    for (int s = 0; s < steps && !m.Terminated(); ++s) {
      const auto a = Clock::now();
      m.FillMask(mask.data());
      mask_us.push_back(Us(a, Clock::now()));
      std::vector<int32_t> allowed;
      for (int32_t id = 0; id < vocab->size(); ++id) {
        if ((mask[static_cast<size_t>(id) >> 5] >> (id & 31)) & 1) allowed.push_back(id);
      }
      if (allowed.empty()) break;
      // Prefer the end, then tokens that close something: walks that finish.
      int32_t pick = allowed[rng() % allowed.size()];
      for (int32_t id : allowed) {
        if (vocab->is_end(id)) pick = id;
      }
      if (!vocab->is_end(pick) && rng() % 3 == 0) {
        for (int32_t id : allowed) {
          const std::string& b = vocab->bytes(id);
          if (!b.empty() && (b.back() == '"' || b.back() == '}' || b.back() == ']')) {
            pick = id;
            break;
          }
        }
      }
      if (!m.AcceptToken(pick)) {
        std::fprintf(stderr, "the mask allowed a token the matcher refused\n");
        return 1;
      }
      walk.push_back(pick);
    }
    // The same walk again, as a later request with the same schema.
    std::vector<double> again_us;
    sluice::grammar::Matcher again(automaton);
    for (int32_t id : walk) {
      const auto a = Clock::now();
      again.FillMask(mask.data());
      again_us.push_back(Us(a, Clock::now()));
      again.AcceptToken(id);
    }
    results.push_back({{"name", item["name"]},
                       {"again_us", again_us},
                       {"schema", item["schema"]},
                       {"compile_us", compile_us},
                       {"mask_us", mask_us},
                       {"walk", walk}});
    std::fprintf(stderr, "\r%d/%zu schemas", ++done, suite.size());
  }
  std::fprintf(stderr, "\n");
  std::ofstream(out_dir + "/sluice.json")
      << nlohmann::json{{"vocab_ms", vocab_ms}, {"results", results}};
  return 0;
}
