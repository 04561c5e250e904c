#include "gateway/gateway.h"

#include <boost/asio.hpp>
#include <chrono>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway/sse_filter.h"
#include "gateway/upstream.h"
#include "nlohmann/json.hpp"
#include "prometheus/text_serializer.h"
#include "spdlog/spdlog.h"

namespace sluice::gateway {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using prometheus::BuildCounter;
using prometheus::BuildGauge;

constexpr const char* kUnauthenticated = "unauthenticated";

std::string ErrorBody(const std::string& message, const std::string& type,
                      const std::string& code) {
  return nlohmann::json{{"error",
                         {{"message", message},
                          {"type", type},
                          {"param", nullptr},
                          {"code", code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code)}}}}
      .dump();
}

// Headers a client may not set for the upstream: hop-by-hop ones, its credentials, and
// the internal ones the gateway itself speaks for.
bool StrippedFromClient(const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  static const char* kHopByHop[] = {"host",    "connection",        "keep-alive", "proxy-authenticate",
                                    "proxy-authorization", "te",     "trailer",    "transfer-encoding",
                                    "upgrade", "content-length",    "authorization"};
  for (const char* h : kHopByHop) {
    if (n == h) return true;
  }
  return n.starts_with("x-sluice-") || n.starts_with("x-tenant") ||
         n.starts_with("x-forwarded-") || n == "x-real-ip" || n == "forwarded";
}

// Upstream headers passed back to the client besides the body's content type.
bool PassedToClient(const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  return n == "retry-after" || n == "x-request-id" || n == "openai-processing-ms";
}

std::string Path(const std::string& target) { return target.substr(0, target.find('?')); }

// The cache salt of a tenant: stable, opaque, and never one a client can choose.
std::string CacheSalt(const std::string& tenant) {
  return "gw-" + Hex(Sha256("sluice-gateway tenant " + tenant)).substr(0, 32);
}

}  // namespace

Gateway::Gateway(GatewayOptions options)
    : options_(std::move(options)), registry(std::make_shared<prometheus::Registry>()) {
  requests_ = &BuildCounter()
                   .Name("sluice_gateway_requests_total")
                   .Help("Requests answered, by tenant and HTTP status")
                   .Register(*registry);
  tokens_ = &BuildCounter()
                 .Name("sluice_gateway_tokens_total")
                 .Help("Tokens charged to tenants from the answers' usage, by kind")
                 .Register(*registry);
  refusals_ = &BuildCounter()
                   .Name("sluice_gateway_refusals_total")
                   .Help("Requests refused by the gateway, by tenant and reason")
                   .Register(*registry);
  reloads_ = &BuildCounter()
                  .Name("sluice_gateway_key_reloads_total")
                  .Help("Keys file reloads, by result")
                  .Register(*registry);
  in_flight_gauge_ = &BuildGauge()
                          .Name("sluice_gateway_requests_in_flight")
                          .Help("Requests relayed and not yet answered, by tenant")
                          .Register(*registry);
}

Gateway::~Gateway() {
  work_.reset();
  ioc_.stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  pool_.reset();  // its sockets before the io_context they belong to
}

absl::StatusOr<std::unique_ptr<Gateway>> Gateway::Create(GatewayOptions options) {
  std::unique_ptr<Gateway> g(new Gateway(std::move(options)));
  boost::system::error_code ec;
  tcp::resolver resolver(g->ioc_);
  auto results = resolver.resolve(g->options_.upstream_host,
                                  std::to_string(g->options_.upstream_port), ec);
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--upstream: cannot resolve ",
                                                   g->options_.upstream_host, ": ", ec.message()));
  }
  g->pool_ = std::make_unique<UpstreamPool>(
      g->ioc_, results.begin()->endpoint(),
      absl::StrCat(g->options_.upstream_host, ":", g->options_.upstream_port));
  auto table = TenantTable::Load(g->options_.keys_path);
  if (!table.ok()) return table.status();
  g->tenants_ = *table;
  g->work_ = std::make_unique<net::executor_work_guard<net::io_context::executor_type>>(
      g->ioc_.get_executor());
  for (int i = 0; i < std::max(1, g->options_.upstream_threads); ++i) {
    g->threads_.emplace_back([gw = g.get()] { gw->ioc_.run(); });
  }
  return g;
}

std::shared_ptr<const TenantTable> Gateway::tenants() const {
  std::lock_guard<std::mutex> lock(tenants_mu_);
  return tenants_;
}

size_t Gateway::num_tenants() const { return tenants()->tenants().size(); }

absl::Status Gateway::Reload() {
  auto table = TenantTable::Load(options_.keys_path);
  if (!table.ok()) {
    reloads_->Add({{"result", "refused"}}).Increment();
    return table.status();
  }
  {
    std::lock_guard<std::mutex> lock(tenants_mu_);
    tenants_ = *table;
  }
  reloads_->Add({{"result", "ok"}}).Increment();
  return absl::OkStatus();
}

http::Headers Gateway::RateLimitHeaders(const QuotaSnapshot& q) const {
  http::Headers h;
  if (q.limit_requests > 0) {
    h.emplace_back("x-ratelimit-limit-requests", std::to_string(q.limit_requests));
    h.emplace_back("x-ratelimit-remaining-requests", std::to_string(q.remaining_requests));
    h.emplace_back("x-ratelimit-reset-requests", FormatDuration(q.reset_requests_s));
  }
  if (q.limit_tokens > 0) {
    h.emplace_back("x-ratelimit-limit-tokens", std::to_string(q.limit_tokens));
    h.emplace_back("x-ratelimit-remaining-tokens", std::to_string(q.remaining_tokens));
    h.emplace_back("x-ratelimit-reset-tokens", FormatDuration(q.reset_tokens_s));
  }
  return h;
}

void Gateway::Count(const std::string& tenant, int status) {
  requests_->Add({{"tenant", tenant}, {"code", std::to_string(status)}}).Increment();
}

void Gateway::Handle(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer) {
  const std::string header = req.Header("Authorization");
  const std::string key = BearerKey(header);
  const std::optional<Tenant> tenant = tenants()->Find(key);
  if (!tenant) {
    refusals_->Add({{"tenant", kUnauthenticated}, {"reason", "auth"}}).Increment();
    Count(kUnauthenticated, 401);
    writer->Send(401, "application/json",
                 ErrorBody(key.empty() ? "Missing API key: send 'Authorization: Bearer <key>'."
                                       : "Incorrect API key provided.",
                           "invalid_request_error", "invalid_api_key"),
                 {{"WWW-Authenticate", "Bearer"}});
    return;
  }
  const std::string path = Path(req.target);
  const bool quota = req.method == "POST" &&
                     (path == "/v1/completions" || path == "/v1/chat/completions");
  if (quota) {
    const Admission a = quotas_.Acquire(*tenant);
    if (a.refusal != Refusal::kNone) {
      refusals_->Add({{"tenant", tenant->name}, {"reason", RefusalName(a.refusal)}}).Increment();
      Count(tenant->name, 429);
      http::Headers h = RateLimitHeaders(a.snapshot);
      h.emplace_back("Retry-After",
                     std::to_string(std::max<int64_t>(1, std::ceil(a.retry_after_s))));
      const std::string what = a.refusal == Refusal::kConcurrency
                                   ? absl::StrCat("Too many concurrent requests: the limit is ",
                                                  tenant->max_concurrent, ".")
                               : a.refusal == Refusal::kRequests
                                   ? absl::StrCat("Rate limit reached for requests per minute: ",
                                                  tenant->requests_per_minute, ".")
                                   : absl::StrCat("Rate limit reached for tokens per minute: ",
                                                  tenant->tokens_per_minute, ".");
      writer->Send(429, "application/json",
                   ErrorBody(what, RefusalName(a.refusal), "rate_limit_exceeded"), h);
      return;
    }
  }
  Proxy(req, std::move(writer), *tenant, quota);
}

void Gateway::Proxy(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer,
                    const Tenant& tenant, bool quota) {
  // The exchange's state, shared by the upstream's callbacks.
  struct Exchange {
    std::shared_ptr<http::ResponseWriter> writer;
    Tenant tenant;
    bool quota = false;
    bool sse = false;
    int status = 0;
    std::string content_type;
    http::Headers headers;
    std::string body;
    std::unique_ptr<SseFilter> filter;
    bool client_wants_usage = false;
    bool released = false;
  };
  auto ex = std::make_shared<Exchange>();
  ex->writer = writer;
  ex->tenant = tenant;
  ex->quota = quota;

  UpstreamRequest up;
  up.method = req.method;
  up.target = req.target;
  up.body = req.body;
  if (req.method == "POST" && !req.body.empty()) {
    nlohmann::json body = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object()) {
      if (quota) quotas_.Release(tenant, 0);
      refusals_->Add({{"tenant", tenant.name}, {"reason", "invalid"}}).Increment();
      Count(tenant.name, 400);
      writer->Send(400, "application/json",
                   ErrorBody("The request body is not a JSON object.", "invalid_request_error",
                             ""));
      return;
    }
    // Tenants never share prefix-cache blocks: whatever salt a client sends is replaced.
    body["cache_salt"] = CacheSalt(tenant.name);
    if (body.value("stream", false) == true) {
      nlohmann::json& opts = body["stream_options"];
      if (!opts.is_object()) opts = nlohmann::json::object();
      ex->client_wants_usage = opts.value("include_usage", false) == true;
      opts["include_usage"] = true;  // the gateway charges tokens from it
    }
    up.body = body.dump();
  }
  for (const auto& [k, v] : req.headers) {
    if (!StrippedFromClient(k)) up.headers.emplace_back(k, v);
  }
  up.headers.emplace_back("X-Sluice-Tenant", tenant.name);

  ++in_flight_;
  in_flight_gauge_->Add({{"tenant", tenant.name}}).Increment();
  UpstreamCallbacks cb;
  cb.on_headers = [this, ex](int status, const http::Headers& headers) {
    ex->status = status;
    for (const auto& [k, v] : headers) {
      if (absl::EqualsIgnoreCase(k, "content-type")) ex->content_type = v;
      if (PassedToClient(k)) ex->headers.emplace_back(k, v);
    }
    for (auto& h : RateLimitHeaders(quotas_.Snapshot(ex->tenant))) ex->headers.push_back(h);
    ex->sse = absl::StartsWith(ex->content_type, "text/event-stream");
    if (ex->sse) {
      ex->filter = std::make_unique<SseFilter>(ex->client_wants_usage);
      ex->writer->StartStream(status, ex->content_type, ex->headers);
    }
  };
  cb.on_body = [ex](std::string_view data) {
    if (ex->sse) {
      std::string out = ex->filter->Feed(data);
      if (!out.empty()) ex->writer->WriteChunk(std::move(out));
    } else {
      ex->body.append(data);
    }
  };
  cb.on_done = [this, ex](const absl::Status& status) {
    Usage usage;
    if (ex->sse) {
      std::string rest = ex->filter->Flush();
      if (!rest.empty()) ex->writer->WriteChunk(std::move(rest));
      usage = ex->filter->usage();
      ex->writer->EndStream();
    } else if (ex->status != 0 && (status.ok() || !ex->body.empty())) {
      ReadUsage(ex->body, &usage);
      ex->writer->Send(ex->status,
                       ex->content_type.empty() ? "application/json" : ex->content_type,
                       std::move(ex->body), ex->headers);
    } else if (!absl::IsCancelled(status)) {
      spdlog::warn("upstream failed for tenant {}: {}", ex->tenant.name,
                   std::string(status.message()));
      // No answer at all (the engine is restarting, loading or gone): a client may
      // retry, on this pod or, once readiness drops, on another.
      ex->status = 503;
      ex->writer->Send(503, "application/json",
                       ErrorBody(absl::StrCat("The upstream server is unavailable (",
                                              std::string(status.message()),
                                              "); retry shortly."),
                                 "server_error", "upstream_unavailable"),
                       {{"Retry-After", "1"}});
    }
    const int code = absl::IsCancelled(status) ? 499 : ex->status;
    Count(ex->tenant.name, code);
    if (usage.seen) {
      tokens_->Add({{"tenant", ex->tenant.name}, {"kind", "prompt"}})
          .Increment(static_cast<double>(usage.prompt_tokens));
      tokens_->Add({{"tenant", ex->tenant.name}, {"kind", "completion"}})
          .Increment(static_cast<double>(usage.completion_tokens));
    }
    if (ex->quota) quotas_.Release(ex->tenant, usage.total());
    --in_flight_;
    in_flight_gauge_->Add({{"tenant", ex->tenant.name}}).Decrement();
  };
  auto call = StartUpstream(*pool_, std::move(up), std::move(cb));
  // A client that goes away closes its upstream request, which frees the server's work.
  writer->OnClientGone([call] { call->Cancel(); });
}

void Gateway::HandleAdmin(const http::Request& req,
                          std::shared_ptr<http::ResponseWriter> writer) {
  const std::string path = Path(req.target);
  if (path == "/health") {
    writer->Send(200, "application/json", R"({"status":"ok"})");
    return;
  }
  if (path == "/metrics") {
    writer->Send(200, "text/plain; version=0.0.4",
                 prometheus::TextSerializer().Serialize(registry->Collect()));
    return;
  }
  if (path == "/ready") {
    // Ready when the upstream is: ask it.
    auto status = std::make_shared<int>(0);
    UpstreamRequest up;
    up.target = "/ready";
    UpstreamCallbacks cb;
    cb.on_headers = [status](int s, const http::Headers&) { *status = s; };
    cb.on_body = [](std::string_view) {};
    const size_t tenants = num_tenants();
    cb.on_done = [writer, status, tenants](const absl::Status& st) {
      const bool ready = st.ok() && *status == 200;
      writer->Send(ready ? 200 : 503, "application/json",
                   nlohmann::json{{"ready", ready},
                                  {"upstream_status", *status},
                                  {"tenants", tenants},
                                  {"reason", ready ? "ready"
                                             : st.ok()
                                                 ? "the upstream is not ready"
                                                 : std::string(st.message())}}
                       .dump());
    };
    StartUpstream(*pool_, std::move(up), std::move(cb));
    return;
  }
  writer->Send(404, "application/json",
               ErrorBody("Not found: the admin port serves /health, /ready and /metrics.",
                         "invalid_request_error", ""));
}

}  // namespace sluice::gateway
