#include "bench/serving/load_runner.h"

#include <algorithm>
#include <limits>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/detached.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/redirect_error.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"

namespace sluice::bench {
namespace {

namespace asio = boost::asio;

Clock::duration ToDuration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// State of one level, owned by RunLevel and touched only on the io_context's thread.
class Level {
 public:
  Level(asio::io_context& io, const Target& target,
        const asio::ip::tcp::resolver::results_type& endpoints,
        const std::vector<PreparedRequest>& requests, const LevelConfig& config,
        const ProgressFn& progress)
      : io_(io),
        target_(target),
        endpoints_(endpoints),
        requests_(requests),
        config_(config),
        progress_(progress),
        slot_freed_(io) {}

  void Start() {
    start_ = Clock::now();
    last_end_ = start_;
    if (config_.closed_loop) {
      for (int64_t c = 0; c < config_.concurrency; ++c) {
        asio::co_spawn(io_, Client(), asio::detached);
      }
    } else {
      asio::co_spawn(io_, Dispatcher(), asio::detached);
    }
  }

  LevelRun Take() {
    LevelRun run;
    run.results = std::move(results_);
    run.duration_s = std::chrono::duration<double>(last_end_ - start_).count();
    return run;
  }

 private:
  bool TimeUp() const {
    return config_.duration_s > 0 && Clock::now() - start_ >= ToDuration(config_.duration_s);
  }

  // Sends request `i` and records it. REQUIRES: the caller counted it in in_flight_
  // (before spawning, so that the cap holds whatever order coroutines start in).
  asio::awaitable<void> Send(int64_t i) {
    const PreparedRequest& req = requests_[static_cast<size_t>(i) % requests_.size()];
    RequestResult r =
        co_await StreamRequest(target_, endpoints_, req.body, config_.request_timeout_s, start_);
    r.expected_prompt_tokens = req.expected_input_tokens;
    last_end_ = std::max(last_end_, Clock::now());
    results_.push_back(std::move(r));
    --in_flight_;
    slot_freed_.cancel_one();
    if (progress_) progress_(static_cast<int64_t>(results_.size()), config_.num_requests);
  }

  // Closed loop: one client sending back to back.
  asio::awaitable<void> Client() {
    while (next_ < config_.num_requests && !TimeUp()) {
      ++in_flight_;
      co_await Send(next_++);
    }
  }

  // Open loop: spawns request i at its arrival time, waiting for a free slot if capped.
  asio::awaitable<void> Dispatcher() {
    const std::vector<double> offsets =
        ArrivalOffsets(config_.arrivals, static_cast<size_t>(config_.num_requests));
    asio::steady_timer timer(io_);
    boost::system::error_code ec;
    for (int64_t i = 0; i < config_.num_requests; ++i) {
      timer.expires_at(start_ + ToDuration(offsets[static_cast<size_t>(i)]));
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (TimeUp()) break;
      while (config_.concurrency > 0 && in_flight_ >= config_.concurrency) {
        slot_freed_.expires_at(Clock::time_point::max());
        co_await slot_freed_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      ++in_flight_;
      asio::co_spawn(io_, Send(i), asio::detached);
    }
  }

  asio::io_context& io_;
  const Target& target_;
  const asio::ip::tcp::resolver::results_type& endpoints_;
  const std::vector<PreparedRequest>& requests_;
  const LevelConfig& config_;
  const ProgressFn& progress_;
  asio::steady_timer slot_freed_;  // cancelled whenever a request ends
  Clock::time_point start_, last_end_;
  int64_t next_ = 0;
  int64_t in_flight_ = 0;
  std::vector<RequestResult> results_;
};

}  // namespace

absl::StatusOr<LevelRun> RunLevel(const Target& target,
                                  const std::vector<PreparedRequest>& requests,
                                  const LevelConfig& config, const ProgressFn& progress) {
  if (requests.empty()) return absl::InvalidArgumentError("no requests to send");
  if (config.closed_loop && config.concurrency <= 0) {
    return absl::InvalidArgumentError("closed loop needs --concurrency > 0");
  }
  absl::StatusOr<asio::ip::tcp::resolver::results_type> endpoints = Resolve(target);
  if (!endpoints.ok()) return endpoints.status();
  asio::io_context io;
  Level level(io, target, *endpoints, requests, config, progress);
  level.Start();
  io.run();
  return level.Take();
}

absl::StatusOr<RequestResult> SendOne(const Target& target, const std::string& body,
                                      double timeout_s) {
  absl::StatusOr<asio::ip::tcp::resolver::results_type> endpoints = Resolve(target);
  if (!endpoints.ok()) return endpoints.status();
  asio::io_context io;
  RequestResult result;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        result = co_await StreamRequest(target, *endpoints, body, timeout_s, Clock::now());
      },
      asio::detached);
  io.run();
  return result;
}

}  // namespace sluice::bench
