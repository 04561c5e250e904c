#include "net/http_server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace sluice::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

constexpr size_t kHeaderLimit = 16 * 1024;

std::string StatusLine(int status) {
  const auto reason = bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status)));
  return absl::StrCat("HTTP/1.1 ", status, " ", std::string(reason.data(), reason.size()), "\r\n");
}

std::string HeaderBlock(int status, const std::string& content_type, const Headers& headers,
                        bool keep_alive) {
  std::string out = StatusLine(status);
  absl::StrAppend(&out, "Server: sluice\r\nContent-Type: ", content_type, "\r\n");
  for (const auto& [k, v] : headers) absl::StrAppend(&out, k, ": ", v, "\r\n");
  absl::StrAppend(&out, "Connection: ", keep_alive ? "keep-alive" : "close", "\r\n");
  return out;
}

}  // namespace

std::string Request::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, absl::string_view(name.data(), name.size()))) return v;
  }
  return "";
}

struct Server::Impl {
  ServerOptions options;
  Handler handler;
  // NOTE: declared before the io_context: sessions destroyed with it still count here.
  std::atomic<size_t> num_connections{0};
  std::atomic<bool> stopping{false};
  net::io_context ioc;
  // Keeps the I/O threads running while no operation is pending: between two chunks of a
  // stream, once the acceptor is closed, a response can be waiting on another thread.
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;  // on a strand of its own
  bool accept_paused = false;             // at the connection cap; on the acceptor's strand
  std::vector<std::thread> threads;
  std::atomic<bool> accepting{true};

  void Accept();
  void ConnectionClosed();
};

namespace {

constexpr size_t kReadChunk = 16 * 1024;
// How long a connection refused on its headers may go on sending the body it is discarding.
constexpr auto kDrainTimeout = std::chrono::seconds(5);

std::string ErrorJson(const std::string& message) {
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped.push_back('\\');
    if (static_cast<unsigned char>(c) >= 0x20) escaped.push_back(c);
  }
  return absl::StrCat(R"({"error":{"message":")", escaped,
                      R"(","type":"invalid_request_error","param":null,"code":null}})");
}

class Session : public ResponseWriter, public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Server::Impl* server) : stream_(std::move(socket)), server_(server) {}
  ~Session() override { server_->ConnectionClosed(); }

  void Run() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadRequest(); });
  }

  void Send(int status, std::string content_type, std::string body, Headers headers) override {
    net::post(stream_.get_executor(),
              [self = shared_from_this(), status, ct = std::move(content_type),
               body = std::move(body), headers = std::move(headers)]() mutable {
                if (self->response_started_) return;
                self->response_started_ = true;
                std::string head = HeaderBlock(status, ct, headers, self->keep_alive_);
                absl::StrAppend(&head, "Content-Length: ", body.size(), "\r\n\r\n", body);
                self->Enqueue(std::move(head), /*last=*/true);
              });
  }

  void StartStream(int status, std::string content_type, Headers headers) override {
    net::post(
        stream_.get_executor(), [self = shared_from_this(), status, ct = std::move(content_type),
                                 headers = std::move(headers)]() mutable {
          if (self->response_started_) return;
          self->response_started_ = true;
          std::string head = HeaderBlock(status, ct, headers, self->keep_alive_);
          absl::StrAppend(&head, "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
          self->Enqueue(std::move(head), /*last=*/false);
        });
  }

  void WriteChunk(std::string data) override {
    if (data.empty()) return;
    net::post(stream_.get_executor(), [self = shared_from_this(), data = std::move(data)] {
      self->Enqueue(absl::StrFormat("%x\r\n%s\r\n", data.size(), data), /*last=*/false);
    });
  }

  void EndStream() override {
    net::post(stream_.get_executor(),
              [self = shared_from_this()] { self->Enqueue("0\r\n\r\n", /*last=*/true); });
  }

  void OnClientGone(std::function<void()> on_close) override {
    net::post(stream_.get_executor(), [self = shared_from_this(), f = std::move(on_close)] {
      if (self->gone_) {
        f();
      } else if (!self->response_done_) {
        self->on_gone_ = std::move(f);
      }
    });
  }

  void Run(std::function<void()> fn) override { net::post(stream_.get_executor(), std::move(fn)); }

 private:
  // A request in three waits, each with its own clock: its first byte (idle_timeout), the
  // rest of its headers (header_timeout), its body (body_timeout).
  void ReadRequest() {
    parser_.emplace();
    parser_->body_limit(server_->options.max_body_bytes);
    parser_->header_limit(kHeaderLimit);
    response_started_ = false;
    response_done_ = false;
    if (buffer_.size() > 0) return ReadHeader();  // pipelined: already here
    stream_.expires_after(server_->options.idle_timeout);
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              if (ec) return self->Close();
                              self->buffer_.commit(n);
                              self->ReadHeader();
                            });
  }

  void ReadHeader() {
    stream_.expires_after(server_->options.header_timeout);
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  // Refuses a request whose bytes the parser rejected; false when `ec` is no such error.
  bool RefuseMalformed(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) {
      Refused(413);
      Refuse(EarlyAnswer{413,
                         "application/json",
                         ErrorJson(absl::StrCat("request body exceeds the limit of ",
                                                server_->options.max_body_bytes, " bytes")),
                         {}});
      return true;
    }
    if (ec == bhttp::error::header_limit || ec == bhttp::error::bad_target ||
        ec == bhttp::error::bad_method || ec == bhttp::error::bad_version ||
        ec == bhttp::error::bad_field || ec == bhttp::error::bad_value ||
        ec == bhttp::error::bad_chunk || ec == bhttp::error::bad_content_length ||
        ec == bhttp::error::bad_transfer_encoding) {
      Refused(400);
      Refuse(EarlyAnswer{400,
                         "application/json",
                         ErrorJson(absl::StrCat("malformed HTTP request: ", ec.message())),
                         {}});
      return true;
    }
    return false;
  }

  void OnHeader(beast::error_code ec) {
    if (RefuseMalformed(ec)) return;
    if (ec) return Close();  // gone, or too slow with its headers
    const auto& msg = parser_->get();
    request_ = Request{};
    request_.method = std::string(msg.method_string());
    request_.target = std::string(msg.target());
    for (const auto& field : msg) {
      request_.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    // Only chunked is a transfer coding this server decodes; anything else would leave the
    // body's framing to guesswork (and to request smuggling).
    if (auto te = msg.find(bhttp::field::transfer_encoding); te != msg.end()) {
      const std::string value(te->value());
      const std::string coding = absl::AsciiStrToLower(absl::StripAsciiWhitespace(value));
      if (coding != "chunked") {
        Refused(501);
        return Refuse(EarlyAnswer{
            501,
            "application/json",
            ErrorJson(absl::StrCat("Transfer-Encoding '", value,
                                   "' is not implemented: send chunked or Content-Length")),
            {}});
      }
    }
    if (server_->options.header_check) {
      if (std::optional<EarlyAnswer> answer = server_->options.header_check(request_)) {
        return Refuse(std::move(*answer));
      }
    }
    if (parser_->is_done()) return OnBody({});
    stream_.expires_after(server_->options.body_timeout);
    auto expect = msg.find(bhttp::field::expect);
    if (expect != msg.end() &&
        absl::EqualsIgnoreCase(std::string(expect->value()), "100-continue")) {
      static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      return net::async_write(stream_, net::buffer(kContinue),
                              [self = shared_from_this()](beast::error_code ec, size_t) {
                                if (ec) return self->Close();
                                self->ReadBody();
                              });
    }
    ReadBody();
  }

  void ReadBody() {
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBody(ec); });
  }

  void OnBody(beast::error_code ec) {
    if (RefuseMalformed(ec)) return;
    if (ec) return Close();
    stream_.expires_never();
    auto msg = parser_->release();
    keep_alive_ = msg.keep_alive();
    request_.body = std::move(msg.body());
    WatchClient();
    server_->handler(request_, shared_from_this());
  }

  // Answers without reading the body, then closes the connection. The body the client may
  // still be sending is read and thrown away first (a close with unread bytes would reset
  // the connection, and the client might never see the answer), for kDrainTimeout at most.
  void Refuse(EarlyAnswer answer) {
    keep_alive_ = false;
    drain_ = true;
    Send(answer.status, std::move(answer.content_type), std::move(answer.body),
         std::move(answer.headers));
  }

  void Refused(int status) {
    if (server_->options.on_refused) server_->options.on_refused(status);
  }

  void Drain() {
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->Close();
                              self->Drain();
                            });
  }

  // Learns of a client that goes away while its response is pending. One wait at a time:
  // it outlives the response when the connection is kept alive and serves the next one.
  void WatchClient() {
    if (watching_) return;
    watching_ = true;
    stream_.socket().async_wait(
        tcp::socket::wait_read, [self = shared_from_this()](beast::error_code ec) {
          self->watching_ = false;
          if (self->response_done_ || self->gone_) return;
          // NOTE: the peek must not block: the bytes that woke us may already have been
          // consumed by the next request's read.
          char byte;
          beast::error_code peek_ec;
          self->stream_.socket().non_blocking(true, peek_ec);
          const size_t n = ec ? 0
                              : self->stream_.socket().receive(net::buffer(&byte, 1),
                                                               tcp::socket::message_peek, peek_ec);
          // Woken with nothing to read (readiness that a read had already used up): go on
          // watching.
          if (peek_ec == net::error::would_block) return self->WatchClient();
          if (ec || peek_ec || n == 0) self->ClientGone();
          // Data means a pipelined request: it is read after this response.
        });
  }

  void ClientGone() {
    if (gone_) return;
    gone_ = true;
    if (on_gone_) {
      auto f = std::move(on_gone_);
      on_gone_ = nullptr;
      f();
    }
    Close();
  }

  void Enqueue(std::string bytes, bool last) {
    if (gone_) return;
    queue_.push_back(std::move(bytes));
    if (last) {
      response_done_ = true;
      // What the handler left to run on a departure may hold this session: drop it now
      // that it can no longer be needed.
      on_gone_ = nullptr;
    }
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (queue_.empty()) {
      writing_ = false;
      if (response_done_) {
        if (keep_alive_) return ReadRequest();
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        if (drain_ && !gone_) {
          stream_.expires_after(kDrainTimeout);
          return Drain();
        }
        return Close();
      }
      return;
    }
    writing_ = true;
    net::async_write(stream_, net::buffer(queue_.front()),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->queue_.pop_front();
                       if (ec) return self->ClientGone();
                       self->WriteNext();
                     });
  }

  void Close() {
    on_gone_ = nullptr;
    beast::error_code ec;
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  Server::Impl* server_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Request request_;  // the one being read: its headers, then its body
  std::deque<std::string> queue_;
  std::function<void()> on_gone_;
  bool keep_alive_ = false;
  bool writing_ = false;
  bool watching_ = false;
  bool response_started_ = false;
  bool response_done_ = false;
  bool gone_ = false;
  bool drain_ = false;  // refused before its body was read
};

}  // namespace

void Server::Impl::Accept() {
  acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket s) {
    if (!accepting.load()) return;
    if (!ec) {
      // Streams write many small chunks: Nagle's algorithm would hold each for an ACK.
      beast::error_code opt_ec;
      s.set_option(tcp::no_delay(true), opt_ec);
      num_connections.fetch_add(1);
      std::make_shared<Session>(std::move(s), this)->Run();
    } else {
      spdlog::warn("accept failed: {}", ec.message());
    }
    if (options.max_connections > 0 && num_connections.load() >= options.max_connections) {
      accept_paused = true;  // ConnectionClosed resumes
      return;
    }
    Accept();
  });
}

void Server::Impl::ConnectionClosed() {
  const size_t before = num_connections.fetch_sub(1);
  if (stopping.load() || options.max_connections == 0 || before < options.max_connections) return;
  net::post(acceptor->get_executor(), [this] {
    if (!accept_paused || !accepting.load() || stopping.load()) return;
    accept_paused = false;
    Accept();
  });
}

Server::Server(ServerOptions options, Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

Server::~Server() { Stop(); }

absl::Status Server::Start() {
  beast::error_code ec;
  const auto address = net::ip::make_address(impl_->options.host, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("bad --host ", impl_->options.host));
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(impl_->options.port));
  impl_->acceptor.emplace(net::make_strand(impl_->ioc));
  impl_->acceptor->open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor->bind(endpoint, ec);
  if (!ec) impl_->acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", impl_->options.host, ":",
                                               impl_->options.port, ": ", ec.message()));
  }
  impl_->Accept();
  impl_->work.emplace(impl_->ioc.get_executor());
  for (int i = 0; i < std::max(1, impl_->options.num_threads); ++i) {
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  }
  return absl::OkStatus();
}

int Server::port() const { return impl_->acceptor ? impl_->acceptor->local_endpoint().port() : 0; }

size_t Server::num_connections() const { return impl_->num_connections.load(); }

void Server::StopAccepting() {
  impl_->accepting.store(false);
  if (!impl_->acceptor) return;
  net::post(impl_->acceptor->get_executor(), [this] {
    beast::error_code ec;
    if (impl_->acceptor) impl_->acceptor->close(ec);
  });
}

void Server::Stop() {
  impl_->stopping.store(true);
  impl_->work.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  impl_->threads.clear();
}

}  // namespace sluice::http
