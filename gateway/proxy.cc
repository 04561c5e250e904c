// Gateway::Proxy: relaying one admitted request to the upstream and its answer back, and
// settling its quota from what the answer reports.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gateway/exchange.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace sluice::gateway {
namespace {

// Headers a client may not set for the upstream: hop-by-hop ones (the fixed list and any
// that its Connection header names), its credentials, and the internal ones the gateway
// itself speaks for.
bool StrippedFromClient(const std::string& name, const std::vector<std::string>& named_hops) {
  const std::string n = absl::AsciiStrToLower(name);
  static const char* kHopByHop[] = {"host",
                                    "connection",
                                    "keep-alive",
                                    "proxy-authenticate",
                                    "proxy-authorization",
                                    "te",
                                    "trailer",
                                    "transfer-encoding",
                                    "upgrade",
                                    "content-length",
                                    "authorization",
                                    "expect",
                                    "proxy-connection"};
  for (const char* h : kHopByHop) {
    if (n == h) return true;
  }
  for (const std::string& h : named_hops) {
    if (n == h) return true;
  }
  return n.starts_with("x-sluice-") || n.starts_with("x-tenant") || n.starts_with("x-forwarded-") ||
         n == "x-real-ip" || n == "forwarded";
}

// The header names a Connection header lists, lower-cased.
std::vector<std::string> ConnectionTokens(const http::Request& req) {
  std::vector<std::string> out;
  for (const auto& [k, v] : req.headers) {
    if (!absl::EqualsIgnoreCase(k, "connection")) continue;
    for (absl::string_view token : absl::StrSplit(v, ',')) {
      token = absl::StripAsciiWhitespace(token);
      if (!token.empty()) out.push_back(absl::AsciiStrToLower(token));
    }
  }
  return out;
}

// Upstream headers passed back to the client besides the body's content type.
bool PassedToClient(const std::string& name) {
  const std::string n = absl::AsciiStrToLower(name);
  return n == "retry-after" || n == "x-request-id" || n == "openai-processing-ms";
}

}  // namespace

void Gateway::Proxy(const http::Request& req, std::shared_ptr<http::ResponseWriter> writer,
                    std::shared_ptr<Exchange> ex, std::string body) {
  ex->writer = writer;
  UpstreamRequest up;
  up.method = req.method;
  up.target = req.target;
  up.body = std::move(body);
  up.timeout = options_.upstream_timeout;
  const std::vector<std::string> hops = ConnectionTokens(req);
  for (const auto& [k, v] : req.headers) {
    if (!StrippedFromClient(k, hops)) up.headers.emplace_back(k, v);
  }
  up.headers.emplace_back("X-Sluice-Tenant", ex->tenant.name);

  ++in_flight_;
  in_flight_gauge_->Add({{"tenant", ex->tenant.name}}).Increment();
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
      ex->filter =
          std::make_unique<SseFilter>(ex->client_include_usage, ex->client_continuous_usage);
      ex->writer->StartStream(status, ex->content_type, ex->headers);
    }
  };
  cb.on_body = [this, ex](std::string_view data) {
    if (!ex->sse) {
      ex->body.append(data);
      return;
    }
    std::string out = ex->filter->Feed(data);
    if (!out.empty()) ex->writer->WriteChunk(std::move(out));
    // Use past the reservation is charged as the stream reports it.
    const Usage& u = ex->filter->usage();
    if (u.seen && u.total() > ex->charged) {
      quotas_.Charge(ex->tenant, u.total() - ex->charged);
      ex->charged = u.total();
    }
  };
  cb.on_done = [this, ex](const absl::Status& status) { Finish(*ex, status); };
  auto call = StartUpstream(*pool_, std::move(up), std::move(cb));
  // A client that goes away closes its upstream request, which frees the server's work.
  // NOTE: weakly: the call's own operations keep it alive while it runs, and a connection
  // that owned it could keep it past the gateway's I/O context at shutdown.
  writer->OnClientGone([weak = std::weak_ptr<UpstreamCall>(call)] {
    if (auto c = weak.lock()) c->Cancel();
  });
}

void Gateway::Finish(Exchange& ex, const absl::Status& status) {
  const bool cancelled = absl::IsCancelled(status);
  const bool timed_out = absl::IsDeadlineExceeded(status);
  const std::string why(status.message());
  Usage usage;
  int code = ex.status;
  if (ex.sse) {
    std::string rest = ex.filter->Flush();
    if (!rest.empty()) ex.writer->WriteChunk(std::move(rest));
    usage = ex.filter->usage();
    if (ex.filter->done()) {
      code = ex.status;  // complete, whatever the client did after [DONE]
    } else if (cancelled) {
      code = 499;
    } else if (!status.ok()) {
      // Cut short: say so, and never with [DONE], so that no client takes the part it got
      // for the whole answer.
      code = timed_out ? 504 : 502;
      spdlog::warn("upstream stream for tenant {} cut short: {}", ex.tenant.name, why);
      ex.writer->WriteChunk(absl::StrCat(
          "event: error\ndata: ",
          ErrorBody(absl::StrCat("The upstream server's answer was cut short (", why, ")."),
                    "upstream_error", timed_out ? "upstream_timeout" : "upstream_error"),
          "\n\n"));
    }
    ex.writer->EndStream();
  } else if (status.ok() && ex.status != 0) {
    ReadUsage(ex.body, &usage);
    ex.writer->Send(ex.status, ex.content_type.empty() ? "application/json" : ex.content_type,
                    std::move(ex.body), ex.headers);
  } else if (cancelled) {
    code = 499;
  } else if (ex.status != 0 || timed_out) {
    code = ex.status != 0 ? 502 : 504;
    spdlog::warn("upstream failed for tenant {}: {}", ex.tenant.name, why);
    ex.writer->Send(
        code, "application/json",
        ErrorBody(ex.status != 0
                      ? absl::StrCat("The upstream server's answer was cut short (", why, ").")
                      : absl::StrCat("The upstream server did not answer (", why, ")."),
                  "upstream_error", code == 504 ? "upstream_timeout" : "upstream_error"),
        {});
  } else {
    // No answer at all (the engine is restarting, loading or gone): a client may retry,
    // on this pod or, once readiness drops, on another.
    code = 503;
    spdlog::warn("upstream unavailable for tenant {}: {}", ex.tenant.name, why);
    ex.writer->Send(
        503, "application/json",
        ErrorBody(absl::StrCat("The upstream server is unavailable (", why, "); retry shortly."),
                  "server_error", "upstream_unavailable"),
        {{"Retry-After", "1"}});
  }
  Count(ex.tenant.name, code);
  // Settle: the usage the answer reported; without one, the prompt the engine may have
  // worked on (it got the request and did not refuse it); else nothing.
  int64_t used = 0;
  if (usage.seen) {
    used = usage.total();
    tokens_->Add({{"tenant", ex.tenant.name}, {"kind", "prompt"}})
        .Increment(static_cast<double>(usage.prompt_tokens));
    tokens_->Add({{"tenant", ex.tenant.name}, {"kind", "completion"}})
        .Increment(static_cast<double>(usage.completion_tokens));
  } else if ((ex.status == 200 || cancelled || timed_out) && ex.prompt_estimate > 0) {
    used = ex.prompt_estimate;
    tokens_->Add({{"tenant", ex.tenant.name}, {"kind", "prompt_estimated"}})
        .Increment(static_cast<double>(used));
  }
  quotas_.Release(ex.tenant, ex.cost, ex.charged - used);
  --in_flight_;
  in_flight_gauge_->Add({{"tenant", ex.tenant.name}}).Decrement();
}

}  // namespace sluice::gateway
