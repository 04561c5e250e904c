#include "engine/runner/step_masks.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "sluice/kernels/sampling.h"

namespace sluice {

StepMasks::~StepMasks() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void StepMasks::Plan(const std::vector<RequestTable::Seq*>& seqs, int vocab) {
  masked_.clear();
  mask_row_.assign(seqs.size(), -1);
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (!seqs[i]->matcher) continue;
    mask_row_[i] = static_cast<int>(masked_.size());
    masked_.push_back(seqs[i]);
  }
  vocab_ = vocab;
  words_ = static_cast<size_t>(kernels::TokenBitmaskWords(vocab));
  masks_.resize(masked_.size() * words_);
  status_ = absl::OkStatus();
}

void StepMasks::Fill(bool async) {
  if (masked_.empty()) return;
  if (!async) {
    FillAll();
    return;
  }
  if (!worker_.joinable()) worker_ = std::thread([this] { Loop(); });
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_ = true;
  }
  cv_.notify_all();
}

absl::Status StepMasks::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !pending_; });
  return status_;
}

void StepMasks::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return pending_ || stop_; });
    if (stop_) return;
    lock.unlock();
    FillAll();
    lock.lock();
    pending_ = false;
    cv_.notify_all();
  }
}

namespace {

// `matcher`'s mask over `vocab` tokens into mask[words]; false when it allows no token.
bool FillRow(grammar::Matcher& matcher, int vocab, uint32_t* mask, size_t words,
             std::vector<uint32_t>& scratch) {
  const size_t own = static_cast<size_t>(kernels::TokenBitmaskWords(matcher.vocab_size()));
  std::memset(mask, 0, sizeof(uint32_t) * words);
  if (own <= words) {
    matcher.FillMask(mask);
  } else {  // tokens the model has no logits for stay masked
    scratch.resize(own);
    matcher.FillMask(scratch.data());
    std::memcpy(mask, scratch.data(), sizeof(uint32_t) * words);
  }
  if (vocab % 32 != 0) mask[words - 1] &= (uint32_t{1} << (vocab % 32)) - 1;
  for (size_t w = 0; w < words; ++w) {
    if (mask[w] != 0) return true;
  }
  return false;
}

}  // namespace

absl::Status StepMasks::FillOne(grammar::Matcher& matcher, int vocab, std::vector<uint32_t>* mask) {
  const size_t words = static_cast<size_t>(kernels::TokenBitmaskWords(vocab));
  mask->resize(words);
  std::vector<uint32_t> scratch;
  if (!FillRow(matcher, vocab, mask->data(), words, scratch)) {
    return absl::InternalError("a request's grammar allows no token");
  }
  return absl::OkStatus();
}

void StepMasks::FillAll() {
  for (size_t m = 0; m < masked_.size(); ++m) {
    uint32_t* mask = masks_.data() + m * words_;
    if (!FillRow(*masked_[m]->matcher, vocab_, mask, words_, scratch_) && status_.ok()) {
      status_ = absl::InternalError("a request's grammar allows no token");
    }
  }
}

}  // namespace sluice
