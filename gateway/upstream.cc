#include "gateway/upstream.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"

namespace sluice::gateway {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr auto kConnectTimeout = std::chrono::seconds(5);
// The server closes a connection idle for 120 s; the pool trusts one for half that.
constexpr auto kPoolTrust = std::chrono::seconds(60);

}  // namespace

struct UpstreamPool::Idle {
  tcp::socket socket;
  Clock::time_point since;
};

UpstreamPool::UpstreamPool(net::io_context& ioc, tcp::endpoint endpoint, std::string host_header,
                           size_t max_idle)
    : ioc_(ioc),
      endpoint_(std::move(endpoint)),
      host_header_(std::move(host_header)),
      max_idle_(max_idle) {}

UpstreamPool::~UpstreamPool() = default;

std::optional<tcp::socket> UpstreamPool::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!idle_.empty()) {
    Idle idle = std::move(idle_.back());  // the most recently used: the least likely closed
    idle_.pop_back();
    if (Clock::now() - idle.since < kPoolTrust && idle.socket.is_open()) {
      return std::move(idle.socket);
    }
    beast::error_code ec;
    idle.socket.close(ec);
  }
  return std::nullopt;
}

void UpstreamPool::Give(tcp::socket socket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() >= max_idle_) {
    beast::error_code ec;
    socket.close(ec);
    return;
  }
  idle_.push_back(Idle{std::move(socket), Clock::now()});
}

namespace {

class Call : public UpstreamCall, public std::enable_shared_from_this<Call> {
 public:
  Call(UpstreamPool& pool, UpstreamCallbacks callbacks)
      : pool_(pool), strand_(net::make_strand(pool.ioc())), callbacks_(std::move(callbacks)) {}

  void Start(UpstreamRequest req) {
    request_.method_string(req.method);
    request_.target(req.target);
    request_.version(11);
    for (const auto& [k, v] : req.headers) request_.set(k, v);
    request_.set(bhttp::field::host, pool_.host_header());
    request_.keep_alive(true);
    request_.body() = std::move(req.body);
    request_.prepare_payload();
    timeout_ = req.timeout;
    net::dispatch(strand_, [self = shared_from_this()] { self->Attempt(/*reuse=*/true); });
  }

  void Cancel() override {
    net::post(strand_, [self = shared_from_this()] {
      if (self->done_) return;
      self->Finish(absl::CancelledError("the client went away"), /*reusable=*/false);
    });
  }

 private:
  template <class F>
  auto OnStrand(F f) {
    return net::bind_executor(strand_, std::move(f));
  }

  void Attempt(bool reuse) {
    std::optional<tcp::socket> pooled = reuse ? pool_.Take() : std::nullopt;
    reused_ = pooled.has_value();
    received_ = false;
    buffer_.clear();
    parser_.emplace();
    // NOTE: not boost::none: Beast 1.74 compares a length with it and refuses every body.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    if (pooled) {
      stream_.emplace(std::move(*pooled));
      return Write();
    }
    stream_.emplace(pool_.ioc());
    stream_->expires_after(kConnectTimeout);
    stream_->async_connect(pool_.endpoint(),
                           OnStrand([self = shared_from_this()](beast::error_code ec) {
                             if (self->done_) return;
                             if (ec) return self->Fail("connecting to the upstream", ec);
                             beast::error_code opt_ec;
                             self->stream_->socket().set_option(tcp::no_delay(true), opt_ec);
                             self->Write();
                           }));
  }

  void Write() {
    stream_->expires_after(timeout_);
    bhttp::async_write(
        *stream_, request_, OnStrand([self = shared_from_this()](beast::error_code ec, size_t) {
          if (self->done_) return;
          if (ec) return self->Fail("writing to the upstream", ec);
          bhttp::async_read_header(
              *self->stream_, self->buffer_, *self->parser_,
              self->OnStrand([self](beast::error_code ec, size_t) { self->OnHeader(ec); }));
        }));
  }

  void OnHeader(beast::error_code ec) {
    if (done_) return;
    if (ec) return Fail("reading the upstream's answer", ec);
    received_ = true;
    http::Headers headers;
    for (const auto& f : parser_->get()) {
      headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    if (callbacks_.on_headers) callbacks_.on_headers(parser_->get().result_int(), headers);
    if (done_) return;
    if (parser_->is_done()) return Finish(absl::OkStatus(), parser_->get().keep_alive());
    ReadSome();
  }

  void ReadSome() {
    stream_->expires_after(timeout_);
    parser_->get().body().data = chunk_;
    parser_->get().body().size = sizeof(chunk_);
    bhttp::async_read_some(
        *stream_, buffer_, *parser_,
        OnStrand([self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); }));
  }

  void OnBody(beast::error_code ec) {
    if (done_) return;
    if (ec == bhttp::error::need_buffer) ec = {};
    const size_t got = sizeof(chunk_) - parser_->get().body().size;
    if (got > 0 && callbacks_.on_body) callbacks_.on_body(std::string_view(chunk_, got));
    if (done_) return;
    if (ec) return Fail("reading the upstream's answer", ec);
    if (parser_->is_done()) return Finish(absl::OkStatus(), parser_->get().keep_alive());
    ReadSome();
  }

  void Fail(const char* what, beast::error_code ec) {
    if (done_) return;
    // A pooled connection the server had closed fails before any answer: a new one may
    // be tried, since the request never reached the server's handler.
    // Not so one that timed out: the server has the request and is silent.
    if (ec == beast::error::timeout) {
      return Finish(
          absl::DeadlineExceededError(absl::StrCat(
              what, ": no answer within ", std::chrono::duration<double>(timeout_).count(), " s")),
          false);
    }
    if (reused_ && !received_) {
      Close();
      return Attempt(/*reuse=*/false);
    }
    Finish(absl::UnavailableError(absl::StrCat(what, ": ", ec.message())), false);
  }

  void Close() {
    if (!stream_) return;
    beast::error_code ec;
    stream_->socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_->socket().close(ec);
  }

  void Finish(const absl::Status& status, bool reusable) {
    if (done_) return;
    done_ = true;
    if (reusable && status.ok() && buffer_.size() == 0) {
      stream_->expires_never();
      pool_.Give(stream_->release_socket());
    } else {
      Close();
    }
    // The callbacks hold the exchange, which may hold what holds this call: dropping them
    // here, after the last one, ends any such cycle.
    auto on_done = std::move(callbacks_.on_done);
    callbacks_ = UpstreamCallbacks{};
    if (on_done) on_done(status);
  }

  UpstreamPool& pool_;
  net::strand<net::io_context::executor_type> strand_;
  UpstreamCallbacks callbacks_;
  std::optional<beast::tcp_stream> stream_;
  bhttp::request<bhttp::string_body> request_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::response_parser<bhttp::buffer_body>> parser_;
  char chunk_[16384];
  std::chrono::milliseconds timeout_{30'000};
  bool done_ = false;
  bool reused_ = false;
  bool received_ = false;
};

}  // namespace

std::shared_ptr<UpstreamCall> StartUpstream(UpstreamPool& pool, UpstreamRequest req,
                                            UpstreamCallbacks callbacks) {
  auto call = std::make_shared<Call>(pool, std::move(callbacks));
  call->Start(std::move(req));
  return call;
}

}  // namespace sluice::gateway
