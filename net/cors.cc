#include "net/cors.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sluice::http {

namespace {

bool ValidOrigin(absl::string_view o) {
  const size_t scheme_end = o.find("://");
  if (scheme_end == absl::string_view::npos || scheme_end == 0) return false;
  const absl::string_view scheme = o.substr(0, scheme_end);
  const absl::string_view host = o.substr(scheme_end + 3);
  if (scheme != "http" && scheme != "https") return false;
  if (host.empty()) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' ||
           c == '[' || c == ']';
  });
}

class HeaderAddingWriter : public ResponseWriter {
 public:
  HeaderAddingWriter(std::shared_ptr<ResponseWriter> inner, Headers headers)
      : inner_(std::move(inner)), headers_(std::move(headers)) {}
  void Send(int status, std::string content_type, std::string body, Headers headers) override {
    inner_->Send(status, std::move(content_type), std::move(body), With(std::move(headers)));
  }
  void StartStream(int status, std::string content_type, Headers headers) override {
    inner_->StartStream(status, std::move(content_type), With(std::move(headers)));
  }
  void WriteChunk(std::string data) override { inner_->WriteChunk(std::move(data)); }
  void EndStream() override { inner_->EndStream(); }
  void OnClientGone(std::function<void()> on_close) override {
    inner_->OnClientGone(std::move(on_close));
  }
  void Run(std::function<void()> fn) override { inner_->Run(std::move(fn)); }

 private:
  Headers With(Headers headers) const {
    headers.insert(headers.end(), headers_.begin(), headers_.end());
    return headers;
  }
  std::shared_ptr<ResponseWriter> inner_;
  const Headers headers_;
};

}  // namespace

absl::StatusOr<CorsPolicy> CorsPolicy::Parse(absl::string_view spec) {
  CorsPolicy p;
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    if (part == "*") {
      p.any_ = true;
      continue;
    }
    if (!ValidOrigin(part)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--allowed-origins: '", part,
                       "' is not an origin (scheme://host[:port], no path) or '*'"));
    }
    p.origins_.emplace_back(absl::AsciiStrToLower(part));
  }
  return p;
}

std::optional<std::string> CorsPolicy::AllowOrigin(absl::string_view origin) const {
  if (origin.empty()) return std::nullopt;
  if (any_) return "*";
  const std::string lower = absl::AsciiStrToLower(origin);
  if (std::find(origins_.begin(), origins_.end(), lower) != origins_.end()) {
    return std::string(origin);
  }
  return std::nullopt;
}

Headers CorsPolicy::ResponseHeaders(absl::string_view origin) const {
  Headers h;
  if (!enabled()) return h;
  if (!any_) h.emplace_back("Vary", "Origin");  // the answer depends on who asks
  if (std::optional<std::string> allow = AllowOrigin(origin)) {
    h.emplace_back("Access-Control-Allow-Origin", *allow);
    // Retry-After is for the calling page to read, beside the body.
    h.emplace_back("Access-Control-Expose-Headers", "Retry-After, retry-after-ms");
  }
  return h;
}

Headers CorsPolicy::PreflightHeaders(const Request& req, absl::string_view allow) const {
  Headers h = ResponseHeaders(req.Header("Origin"));
  h.emplace_back("Allow", absl::StrCat(allow, ", OPTIONS"));
  if (!AllowOrigin(req.Header("Origin"))) return h;
  const std::string method = req.Header("Access-Control-Request-Method");
  bool method_ok = false;
  for (absl::string_view m : absl::StrSplit(allow, ", ")) method_ok = method_ok || m == method;
  if (!method_ok) return h;
  h.emplace_back("Access-Control-Allow-Methods", absl::StrCat(allow, ", OPTIONS"));
  const std::string asked = req.Header("Access-Control-Request-Headers");
  h.emplace_back("Access-Control-Allow-Headers",
                 asked.empty() ? std::string("Authorization, Content-Type") : asked);
  h.emplace_back("Access-Control-Max-Age", "600");
  return h;
}

std::shared_ptr<ResponseWriter> WithHeaders(std::shared_ptr<ResponseWriter> inner,
                                            Headers headers) {
  if (headers.empty()) return inner;
  return std::make_shared<HeaderAddingWriter>(std::move(inner), std::move(headers));
}

}  // namespace sluice::http
