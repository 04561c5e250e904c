// Speculative decoding's parts: the n-gram proposer's lookups, greedy verification, and
// the rejection sampler's output distribution (chi-square against the target's own, for
// a deterministic proposer and for drafts drawn from a draft distribution).
#include <cmath>
#include <random>
#include <vector>

#include "engine/spec/proposer.h"
#include "engine/spec/verify.h"
#include "gtest/gtest.h"

namespace sluice {
namespace {

using Ids = std::vector<int32_t>;

TEST(NgramProposerTest, ProposesWhatFollowedTheLastMatch) {
  NgramProposer p(1, 3);
  // "def f ( x ) : return x def f (" -> after the earlier "def f (": "x ) :".
  const Ids code = {10, 11, 12, 13, 14, 15, 16, 13, 10, 11, 12};
  EXPECT_EQ(p.Lookup(code, 3), (Ids{13, 14, 15}));
  EXPECT_EQ(p.Lookup(code, 10), (Ids{13, 14, 15, 16, 13, 10, 11, 12}));  // up to the end
  EXPECT_EQ(p.Lookup(code, 0), Ids{});
  EXPECT_EQ(p.Lookup(Ids{1, 2, 3, 4}, 3), Ids{});  // the suffix never occurred before
  EXPECT_EQ(p.Lookup(Ids{7}, 3), Ids{});
}

TEST(NgramProposerTest, PrefersTheLongestSuffixThenTheMostRecent) {
  NgramProposer p(1, 3);
  // The 1-gram "5" occurs last at index 6 (followed by 9); the 2-gram "4 5" at index 1
  // (followed by 6): the longer match wins.
  EXPECT_EQ(p.Lookup(Ids{4, 5, 6, 7, 8, 3, 5, 9, 4, 5}, 1), Ids{6});
  // The 3-gram "0 1 2" once before (followed by 8), though "1 2" also follows 7 earlier.
  EXPECT_EQ(p.Lookup(Ids{1, 2, 7, 0, 1, 2, 8, 0, 1, 2}, 1), Ids{8});
  // Two earlier "1 2" and no longer match: the most recent (followed by 8) wins over the
  // first (followed by 7).
  EXPECT_EQ(p.Lookup(Ids{1, 2, 7, 3, 1, 2, 8, 4, 1, 2}, 2), (Ids{8, 4}));
  // min_n 2: a lone repeated token is not enough.
  NgramProposer two(2, 3);
  EXPECT_EQ(two.Lookup(Ids{5, 1, 2, 3, 5}, 2), Ids{});
}

std::vector<float> Logits(const std::vector<Ids>& argmax_rows, int vocab) {
  std::vector<float> l;
  for (const Ids& row : argmax_rows) {
    std::vector<float> r(vocab, 0.0f);
    for (int32_t id : row) r[id] = 5.0f;  // several: a tie
    l.insert(l.end(), r.begin(), r.end());
  }
  return l;
}

TEST(VerifyTest, GreedyKeepsDraftsWhileTheyAreTheTargetsArgmax) {
  const int vocab = 8;
  const auto all = VerifyGreedy(Ids{3, 1, 4}, Logits({{3}, {1}, {4}, {6}}, vocab).data(), vocab);
  EXPECT_EQ(all.tokens, (Ids{3, 1, 4, 6}));  // every draft, then the bonus token
  EXPECT_EQ(all.accepted, 3);
  const auto miss = VerifyGreedy(Ids{3, 2, 4}, Logits({{3}, {1}, {4}, {6}}, vocab).data(), vocab);
  EXPECT_EQ(miss.tokens, (Ids{3, 1}));  // the target's token at the first miss
  EXPECT_EQ(miss.accepted, 1);
  const auto none = VerifyGreedy(Ids{}, Logits({{5}}, vocab).data(), vocab);
  EXPECT_EQ(none.tokens, Ids{5});
  // A tie goes to the lower id, as the sampler's argmax: draft 2 loses to 1.
  const auto tie = VerifyGreedy(Ids{2}, Logits({{1, 2}, {0}}, vocab).data(), vocab);
  EXPECT_EQ(tie.tokens, Ids{1});
}

std::vector<float> RandomDistribution(std::mt19937& rng, int vocab) {
  std::gamma_distribution<float> g(0.7f);
  std::vector<float> p(vocab);
  float sum = 0;
  for (float& x : p) sum += (x = g(rng) + 1e-3f);
  for (float& x : p) x /= sum;
  return p;
}

// Pearson's statistic of `counts` against `n` draws of `p`.
double ChiSquare(const std::vector<int>& counts, const float* p, int n) {
  double chi = 0;
  for (size_t t = 0; t < counts.size(); ++t) {
    const double want = double{p[t]} * n;
    chi += (counts[t] - want) * (counts[t] - want) / want;
  }
  return chi;
}

// The tokens a speculative step emits at positions 0 and 1 follow the target's p_0 and
// p_1 (the target here does not depend on the prefix, so position 1's token, when the
// step reaches it, follows p_1 whatever came before). 5 tokens: 4 degrees of freedom,
// 18.47 is the 0.1 % critical value.
void CheckDistribution(bool draft_model) {
  constexpr int kVocab = 5, kDrafts = 3, kTrials = 200000;
  std::mt19937 rng(draft_model ? 7 : 8);
  std::vector<float> target, draft;
  for (int i = 0; i <= kDrafts; ++i) {
    const auto p = RandomDistribution(rng, kVocab);
    target.insert(target.end(), p.begin(), p.end());
    if (i < kDrafts) {
      const auto q = RandomDistribution(rng, kVocab);
      draft.insert(draft.end(), q.begin(), q.end());
    }
  }
  std::uniform_real_distribution<float> u01(0.0f, 1.0f);
  auto uniform = [&] { return u01(rng); };
  std::vector<int> first(kVocab, 0), second(kVocab, 0);
  int reached_second = 0, accepted = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    Ids drafts;
    for (int i = 0; i < kDrafts; ++i) {
      if (draft_model) {
        std::discrete_distribution<int> q(draft.begin() + i * kVocab,
                                          draft.begin() + (i + 1) * kVocab);
        drafts.push_back(q(rng));
      } else {
        drafts.push_back((trial + i) % kVocab);  // a proposer that guesses by rote
      }
    }
    const Verified v =
        VerifySampled(drafts, target.data(), draft_model ? draft.data() : nullptr, kVocab, uniform);
    ASSERT_EQ(v.tokens.size(), static_cast<size_t>(v.accepted) + 1);
    ASSERT_LE(v.accepted, kDrafts);
    for (int i = 0; i < v.accepted; ++i) ASSERT_EQ(v.tokens[i], drafts[i]);
    accepted += v.accepted;
    ++first[v.tokens[0]];
    if (v.tokens.size() > 1) {
      ++second[v.tokens[1]];
      ++reached_second;
    }
  }
  EXPECT_LT(ChiSquare(first, target.data(), kTrials), 18.47);
  EXPECT_LT(ChiSquare(second, target.data() + kVocab, reached_second), 18.47);
  EXPECT_GT(accepted, kTrials / 10);  // the drafts do get accepted
}

TEST(VerifyTest, RejectionSamplingKeepsTheTargetDistributionForFixedDrafts) {
  CheckDistribution(/*draft_model=*/false);
}

TEST(VerifyTest, RejectionSamplingKeepsTheTargetDistributionForDraftModelDrafts) {
  CheckDistribution(/*draft_model=*/true);
}

// Accepting every draft (a broken sampler) would emit the drafts' distribution: the
// statistic above must see that.
TEST(VerifyTest, TheChiSquareCheckCatchesTheDraftsDistribution) {
  constexpr int kVocab = 5, kTrials = 200000;
  std::mt19937 rng(9);
  const auto p = RandomDistribution(rng, kVocab), q = RandomDistribution(rng, kVocab);
  std::discrete_distribution<int> draw_q(q.begin(), q.end());
  std::vector<int> counts(kVocab, 0);
  for (int i = 0; i < kTrials; ++i) ++counts[draw_q(rng)];
  EXPECT_GT(ChiSquare(counts, p.data(), kTrials), 18.47);
}

}  // namespace
}  // namespace sluice
