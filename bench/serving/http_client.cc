#include "bench/serving/http_client.h"

#include <array>
#include <exception>
#include <limits>

#include "absl/status/status.h"
#include "bench/serving/stream_recorder.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/redirect_error.hpp"
#include "boost/asio/this_coro.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"

namespace sluice::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

absl::StatusOr<Target> ParseTarget(const std::string& url, Endpoint endpoint) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    return absl::InvalidArgumentError("--url: only http:// URLs are supported, got '" + url + "'");
  }
  std::string rest = url.substr(scheme.size());
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash);
  Target t;
  const size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    t.host = authority.substr(0, colon);
    t.port = authority.substr(colon + 1);
  } else {
    t.host = authority;
    t.port = "80";
  }
  if (!t.host.empty() && t.host.front() == '[' && t.host.back() == ']') {
    t.host = t.host.substr(1, t.host.size() - 2);
  }
  if (t.host.empty() || t.port.empty()) {
    return absl::InvalidArgumentError("--url: no host or port in '" + url + "'");
  }
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (!EndsWith(path, "completions")) {
    const std::string tail = endpoint == Endpoint::kChat ? "/chat/completions" : "/completions";
    path += EndsWith(path, "/v1") ? tail : "/v1" + tail;
  }
  t.path = path;
  return t;
}

absl::StatusOr<tcp::resolver::results_type> Resolve(const Target& target) {
  asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto results = resolver.resolve(target.host, target.port, ec);
  if (ec) {
    return absl::UnavailableError("cannot resolve " + target.host + ":" + target.port + ": " +
                                  ec.message());
  }
  return results;
}

asio::awaitable<RequestResult> StreamRequest(const Target& target,
                                             const tcp::resolver::results_type& endpoints,
                                             const std::string& body, double timeout_s,
                                             Clock::time_point level_start) {
  const Clock::time_point start = Clock::now();
  StreamRecorder recorder;
  SseParser sse(
      [&](std::string_view data) { recorder.OnEvent(data, Seconds(Clock::now() - start)); });
  std::string error;
  try {
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    stream.expires_after(
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s)));
    boost::system::error_code ec;
    co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) throw boost::system::system_error(ec, "connect");
    stream.socket().set_option(tcp::no_delay(true), ec);

    http::request<http::string_body> req{http::verb::post, target.path, 11};
    req.set(http::field::host, target.host + ":" + target.port);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "text/event-stream");
    req.set(http::field::connection, "close");
    if (!target.api_key.empty()) req.set(http::field::authorization, "Bearer " + target.api_key);
    req.body() = body;
    req.prepare_payload();
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) throw boost::system::system_error(ec, "write");

    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    // NOTE: not boost::none: Boost 1.74 then rejects every Content-Length body.
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    co_await http::async_read_header(stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec) throw boost::system::system_error(ec, "read header");
    const unsigned status = parser.get().result_int();
    std::string error_body;
    std::array<char, 16384> chunk;
    while (!parser.is_done() && !recorder.done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      co_await http::async_read_some(stream, buffer, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) throw boost::system::system_error(ec, "read body");
      const size_t got = chunk.size() - parser.get().body().size;
      if (status == 200) {
        sse.Feed(std::string_view(chunk.data(), got));
      } else if (error_body.size() < 500) {
        error_body.append(chunk.data(), got);
      }
    }
    if (status != 200) {
      error = "HTTP " + std::to_string(status) + ": " + error_body.substr(0, 500);
    }
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  } catch (const std::exception& e) {
    error = e.what();
  }
  RequestResult r = recorder.Finish(error);
  r.start_s = Seconds(start - level_start);
  co_return r;
}

}  // namespace sluice::bench
