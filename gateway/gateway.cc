#include "gateway/gateway.h"

#include <boost/asio.hpp>
#include <chrono>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway/completion_body.h"
#include "gateway/exchange.h"
#include "net/json_limits.h"
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
// Answers given before the request was whole enough to know its tenant.
constexpr const char* kUnidentified = "unidentified";

// A body the gateway refuses as the engine would: its words, its error object (code 400).
http::EarlyAnswer Invalid(const std::string& message, const std::string& param = "") {
  return http::EarlyAnswer{
      400, "application/json", ErrorBody(message, "invalid_request_error", 400, param), {}};
}

std::string Path(const std::string& target) { return target.substr(0, target.find('?')); }

// What a tenant may reach: the API and the tokenizer, nothing of the admin surface.
bool TenantPath(const std::string& path) {
  return path.starts_with("/v1/") || path == "/tokenize" || path == "/detokenize";
}

}  // namespace

std::string ErrorBody(const std::string& message, const std::string& type,
                      const nlohmann::json& code, const std::string& param) {
  return nlohmann::json{
      {"error",
       {{"message", message},
        {"type", type},
        {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
        {"code", code}}}}
      .dump();
}

Gateway::Gateway(GatewayOptions options)
    : options_(std::move(options)), registry(std::make_shared<prometheus::Registry>()) {
  requests_ = &BuildCounter()
                   .Name("sluice_gateway_requests_total")
                   .Help("Requests answered, by tenant and HTTP status")
                   .Register(*registry);
  tokens_ = &BuildCounter()
                 .Name("sluice_gateway_tokens_total")
                 .Help("Tokens charged to tenants, by kind (from the answers' usage)")
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
  auto results =
      resolver.resolve(g->options_.upstream_host, std::to_string(g->options_.upstream_port), ec);
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--upstream: cannot resolve ", g->options_.upstream_host, ": ", ec.message()));
  }
  g->pool_ = std::make_unique<UpstreamPool>(
      g->ioc_, results.begin()->endpoint(),
      absl::StrCat(g->options_.upstream_host, ":", g->options_.upstream_port));
  auto table = TenantTable::Load(g->options_.keys_path);
  if (!table.ok()) return table.status();
  g->tenants_ = *table;
  auto salt = SaltKey::Load(g->options_.salt_secret_file);
  if (!salt.ok()) return salt.status();
  g->salt_ = std::move(*salt);
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

void Gateway::CountRefusedByServer(int status) {
  refusals_->Add({{"tenant", kUnidentified}, {"reason", "http"}}).Increment();
  Count(kUnidentified, status);
}

std::optional<http::EarlyAnswer> Gateway::Refuse(const std::string& tenant, const char* reason,
                                                 int status, http::EarlyAnswer answer) {
  refusals_->Add({{"tenant", tenant}, {"reason", reason}}).Increment();
  Count(tenant, status);
  answer.status = status;
  return answer;
}

std::optional<Tenant> Gateway::Authenticate(const http::Request& req,
                                            std::optional<http::EarlyAnswer>* refusal) {
  const std::string key = BearerKey(req.Header("Authorization"));
  std::optional<Tenant> tenant = tenants()->Find(key);
  if (!tenant) {
    *refusal =
        Refuse(kUnauthenticated, "auth", 401,
               http::EarlyAnswer{
                   401,
                   "application/json",
                   ErrorBody(key.empty() ? "Missing API key: send 'Authorization: Bearer <key>'."
                                         : "Incorrect API key provided.",
                             "invalid_request_error", "invalid_api_key"),
                   {{"WWW-Authenticate", "Bearer"}}});
  }
  return tenant;
}

std::optional<Tenant> Gateway::Gate(const http::Request& req,
                                    std::optional<http::EarlyAnswer>* refusal) {
  std::optional<Tenant> tenant = Authenticate(req, refusal);
  if (!tenant) return std::nullopt;
  const std::string path = Path(req.target);
  if (TenantPath(path)) return tenant;
  *refusal = Refuse(tenant->name, "not_found", 404,
                    http::EarlyAnswer{404,
                                      "application/json",
                                      ErrorBody(absl::StrCat("no route for ", path,
                                                             ": this port serves /v1/*, "
                                                             "/tokenize and /detokenize"),
                                                "invalid_request_error", nullptr),
                                      {}});
  return std::nullopt;
}

std::optional<http::EarlyAnswer> Gateway::CheckHeaders(const http::Request& req) {
  std::optional<http::EarlyAnswer> refusal;
  Gate(req, &refusal);
  return refusal;
}

std::optional<Cost> Gateway::CompletionCost(const http::Request& req, const Tenant& tenant,
                                            bool chat, std::string* body,
                                            std::optional<http::EarlyAnswer>* refusal,
                                            CompletionShape* shape) {
  auto invalid = [&](const std::string& message, const std::string& param = "") {
    *refusal = Refuse(tenant.name, "invalid", 400, Invalid(message, param));
    return std::nullopt;
  };
  if (absl::Status depth = CheckJsonDepth(req.body); !depth.ok()) {
    return invalid(std::string(depth.message()));
  }
  const nlohmann::json parsed = nlohmann::json::parse(req.body, nullptr, false);
  if (parsed.is_discarded()) return invalid("request body is not valid JSON (or not valid UTF-8)");
  if (!parsed.is_object()) return invalid("request body must be a JSON object");
  auto read = ReadCompletionShape(parsed, req.body, chat);
  if (auto* e = std::get_if<FieldError>(&read)) return invalid(e->message, e->param);
  *shape = std::get<CompletionShape>(read);
  // Per sequence: what the client asked for, else the engine's default for completions
  // (16), else ours, no more than the tenant's minute can hold.
  int64_t per_sequence = std::max<int64_t>(0, shape->max_tokens.value_or(0));
  if (!shape->max_tokens) {
    per_sequence = chat ? options_.default_reserve_tokens : 16;
    if (chat && tenant.tokens_per_minute > 0) {
      per_sequence = std::min(
          per_sequence, std::max<int64_t>(0, (tenant.tokens_per_minute - shape->prompt_tokens) /
                                                 std::max<int64_t>(1, shape->sequences())));
    }
  }
  *body = RewriteCompletionBody(req.body, salt_->CacheSalt(tenant.name), shape->stream);
  // Overflow-safe: both factors are at most 2^31.
  const double tokens = static_cast<double>(shape->prompt_tokens) +
                        static_cast<double>(per_sequence) * static_cast<double>(shape->sequences());
  return Cost{static_cast<int64_t>(std::min(tokens, 9e18)), shape->sequences()};
}

http::EarlyAnswer Gateway::QuotaRefusal(const Tenant& tenant, const Admission& a,
                                        const Cost& cost) {
  http::Headers h = RateLimitHeaders(a.snapshot);
  std::string what;
  switch (a.refusal) {
    case Refusal::kConcurrency:
      what =
          absl::StrCat("Too many concurrent requests: the limit is ", tenant.max_concurrent, ".");
      break;
    case Refusal::kSequences:
      what = a.never ? absl::StrCat("Request too large: ", cost.sequences,
                                    " sequences (prompts × n), the limit is ",
                                    tenant.max_concurrent_sequences, " at once.")
                     : absl::StrCat("Too many concurrent sequences (prompts × n): the limit is ",
                                    tenant.max_concurrent_sequences, ".");
      break;
    case Refusal::kRequests:
      what = absl::StrCat(
          "Rate limit reached for requests per minute: ", tenant.requests_per_minute, ".");
      break;
    default:
      what =
          a.never
              ? absl::StrCat("Request too large for tokens per minute: it may use ", cost.tokens,
                             " tokens (prompt + max_tokens × n × prompts), "
                             "the limit is ",
                             tenant.tokens_per_minute, ".")
              : absl::StrCat("Rate limit reached for tokens per minute: ", tenant.tokens_per_minute,
                             "; this request reserves ", cost.tokens, ".");
  }
  if (a.never) {
    // Retrying the same request cannot succeed; OpenAI's clients read this header.
    h.emplace_back("x-should-retry", "false");
  } else {
    h.emplace_back("Retry-After", std::to_string(std::max<int64_t>(1, std::ceil(a.retry_after_s))));
  }
  return http::EarlyAnswer{429, "application/json",
                           ErrorBody(what, RefusalName(a.refusal), "rate_limit_exceeded"), h};
}

void Gateway::Handle(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer) {
  auto send = [&writer](const http::EarlyAnswer& a) {
    writer->Send(a.status, a.content_type, a.body, a.headers);
  };
  // The headers were checked before the body was read; the keys may have been reloaded
  // since, so again.
  std::optional<http::EarlyAnswer> refusal;
  std::optional<Tenant> tenant = Gate(req, &refusal);
  if (!tenant) return send(*refusal);
  const std::string path = Path(req.target);
  const bool chat = path == "/v1/chat/completions";
  const bool completion = req.method == "POST" && (chat || path == "/v1/completions");
  auto ex = std::make_shared<Exchange>();
  ex->tenant = *tenant;
  std::string body = req.body;
  if (completion) {
    CompletionShape shape;
    std::optional<Cost> cost = CompletionCost(req, *tenant, chat, &body, &refusal, &shape);
    if (!cost) return send(*refusal);
    ex->cost = *cost;
    ex->prompt_estimate = shape.prompt_tokens;
    ex->client_include_usage = shape.client_include_usage;
    ex->client_continuous_usage = shape.client_continuous_usage;
  }
  const Admission a = quotas_.Acquire(*tenant, ex->cost);
  if (a.refusal != Refusal::kNone) {
    return send(
        *Refuse(tenant->name, RefusalName(a.refusal), 429, QuotaRefusal(*tenant, a, ex->cost)));
  }
  ex->charged = ex->cost.tokens;
  Proxy(req, std::move(writer), std::move(ex), std::move(body));
}

void Gateway::HandleAdmin(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer) {
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
    // Ready when the upstream is: ask it, and take no answer in time for a no.
    auto status = std::make_shared<int>(0);
    UpstreamRequest up;
    up.target = "/ready";
    up.timeout = options_.ready_timeout;
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
                                  {"reason", ready     ? "ready"
                                             : st.ok() ? "the upstream is not ready"
                                                       : std::string(st.message())}}
                       .dump());
    };
    StartUpstream(*pool_, std::move(up), std::move(cb));
    return;
  }
  writer->Send(404, "application/json",
               ErrorBody("Not found: the admin port serves /health, /ready and /metrics.",
                         "invalid_request_error", nullptr));
}

}  // namespace sluice::gateway
