#include "engine/core/request_stream.h"

namespace sluice {

void RequestStream::Push(RequestOutput output) {
  std::function<void()> notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(output));
    notify = notifier_;
  }
  cv_.notify_all();
  if (notify) notify();
}

std::optional<RequestOutput> RequestStream::Pop(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); })) return std::nullopt;
  RequestOutput out = std::move(queue_.front());
  queue_.pop_front();
  return out;
}

std::vector<RequestOutput> RequestStream::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RequestOutput> out(std::make_move_iterator(queue_.begin()),
                                 std::make_move_iterator(queue_.end()));
  queue_.clear();
  return out;
}

void RequestStream::SetNotifier(std::function<void()> notifier) {
  std::lock_guard<std::mutex> lock(mu_);
  notifier_ = std::move(notifier);
}

}  // namespace sluice
