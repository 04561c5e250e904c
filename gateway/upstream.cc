#include "gateway/upstream.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"

namespace sluice::gateway {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr auto kIdleTimeout = std::chrono::seconds(600);

class Call : public UpstreamCall, public std::enable_shared_from_this<Call> {
 public:
  Call(net::io_context& ioc, UpstreamCallbacks callbacks)
      : stream_(net::make_strand(ioc)), callbacks_(std::move(callbacks)) {}

  void Start(const tcp::endpoint& endpoint, const std::string& host, UpstreamRequest req) {
    request_.method_string(req.method);
    request_.target(req.target);
    request_.version(11);
    for (const auto& [k, v] : req.headers) request_.set(k, v);
    request_.set(bhttp::field::host, host);
    request_.set(bhttp::field::connection, "close");
    request_.body() = std::move(req.body);
    request_.prepare_payload();
    net::dispatch(stream_.get_executor(), [self = shared_from_this(), endpoint] {
      self->stream_.expires_after(kConnectTimeout);
      self->stream_.async_connect(endpoint, [self](beast::error_code ec) { self->OnConnect(ec); });
    });
  }

  void Cancel() override {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      if (self->done_) return;
      beast::error_code ec;
      self->stream_.socket().close(ec);
      self->Finish(absl::CancelledError("the client went away"));
    });
  }

 private:
  void OnConnect(beast::error_code ec) {
    if (ec) return Fail("connecting to the upstream", ec);
    beast::error_code opt_ec;
    stream_.socket().set_option(tcp::no_delay(true), opt_ec);
    stream_.expires_after(kIdleTimeout);
    bhttp::async_write(stream_, request_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Fail("writing to the upstream", ec);
      // NOTE: not boost::none: Beast 1.74 compares a length with it and refuses every body.
      self->parser_.body_limit(std::numeric_limits<std::uint64_t>::max());
      bhttp::async_read_header(self->stream_, self->buffer_, self->parser_,
                               [self](beast::error_code ec, size_t) { self->OnHeader(ec); });
    });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return Fail("reading the upstream's answer", ec);
    http::Headers headers;
    for (const auto& f : parser_.get()) {
      headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    if (callbacks_.on_headers) callbacks_.on_headers(parser_.get().result_int(), headers);
    if (done_) return;
    if (parser_.is_done()) return Finish(absl::OkStatus());
    ReadSome();
  }

  void ReadSome() {
    parser_.get().body().data = chunk_;
    parser_.get().body().size = sizeof(chunk_);
    bhttp::async_read_some(stream_, buffer_, parser_,
                           [self = shared_from_this()](beast::error_code ec, size_t) {
                             self->OnBody(ec);
                           });
  }

  void OnBody(beast::error_code ec) {
    if (ec == bhttp::error::need_buffer) ec = {};
    const size_t got = sizeof(chunk_) - parser_.get().body().size;
    if (got > 0 && callbacks_.on_body && !done_) {
      callbacks_.on_body(std::string_view(chunk_, got));
    }
    if (done_) return;
    if (ec) return Fail("reading the upstream's answer", ec);
    if (parser_.is_done()) return Finish(absl::OkStatus());
    ReadSome();
  }

  void Fail(const char* what, beast::error_code ec) {
    if (done_) return;
    Finish(absl::UnavailableError(absl::StrCat(what, ": ", ec.message())));
  }

  void Finish(const absl::Status& status) {
    if (done_) return;
    done_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
    if (callbacks_.on_done) callbacks_.on_done(status);
  }

  beast::tcp_stream stream_;
  UpstreamCallbacks callbacks_;
  bhttp::request<bhttp::string_body> request_;
  beast::flat_buffer buffer_;
  bhttp::response_parser<bhttp::buffer_body> parser_;
  char chunk_[16384];
  bool done_ = false;
};

}  // namespace

std::shared_ptr<UpstreamCall> StartUpstream(net::io_context& ioc, const tcp::endpoint& upstream,
                                            const std::string& host_header, UpstreamRequest req,
                                            UpstreamCallbacks callbacks) {
  auto call = std::make_shared<Call>(ioc, std::move(callbacks));
  call->Start(upstream, host_header, std::move(req));
  return call;
}

}  // namespace sluice::gateway
