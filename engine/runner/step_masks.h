// The token bitmasks of a step's constrained rows (structured outputs). A mask depends
// only on the tokens its request accepted before the step, so it is filled while the
// forward pass runs: on a worker thread for the CPU backend, whose forward pass keeps the
// engine thread, or on the engine thread between kernel launches for CUDA.
// Thread safety: one engine thread calls Start and Wait; between them the worker alone
// touches the rows' matchers.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "engine/runner/request_table.h"

namespace sluice {

class StepMasks {
 public:
  StepMasks() = default;
  StepMasks(const StepMasks&) = delete;
  StepMasks& operator=(const StepMasks&) = delete;
  ~StepMasks();

  // The step's rows: those of `seqs` with a matcher get a mask over the model's `vocab`
  // tokens (past a tokenizer's shorter vocabulary, tokens stay masked). mask_row is set
  // from here on.
  void Plan(const std::vector<RequestTable::Seq*>& seqs, int vocab);
  // Fills the planned masks: with `async` on the worker thread, else at once.
  void Fill(bool async);
  // Waits for Fill. Fails when a row's grammar allows no token at all.
  absl::Status Wait();

  // `matcher`'s mask now, over `vocab` tokens, into *mask (at once, on this thread).
  // Fails when it allows no token.
  static absl::Status FillOne(grammar::Matcher& matcher, int vocab, std::vector<uint32_t>* mask);

  // The compact index of row i's mask, or -1 when row i is unconstrained.
  int mask_row(size_t i) const { return mask_row_[i]; }
  // After Wait: row i's mask, or nullptr.
  const uint32_t* row(size_t i) const {
    return mask_row_[i] < 0 ? nullptr : masks_.data() + static_cast<size_t>(mask_row_[i]) * words_;
  }
  // The masks, compact: [num_masked(), words()].
  const uint32_t* data() const { return masks_.data(); }
  int num_masked() const { return static_cast<int>(masked_.size()); }
  size_t words() const { return words_; }

 private:
  void FillAll();
  void Loop();

  std::vector<RequestTable::Seq*> masked_;  // rows with a matcher, compact order
  std::vector<int> mask_row_;
  std::vector<uint32_t> masks_, scratch_;
  size_t words_ = 0;
  int vocab_ = 0;
  absl::Status status_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false, stop_ = false;
  std::thread worker_;  // started by the first asynchronous Start
};

}  // namespace sluice
