// RenderSvg (report.h): three panels — TTFT, TPOT (p50, p99, SLO line) and request
// throughput / goodput — against the offered rate.
#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "bench/serving/report.h"
#include "fmt/format.h"

namespace sluice::bench {
namespace {

constexpr double kPanelW = 380, kMarginL = 60, kMarginT = 56, kGap = 40;
constexpr double kPlotW = kPanelW - kMarginL - 15, kPlotH = 220;
constexpr double kHeight = kMarginT + kPlotH + 46;  // room for the x-axis label

struct Series {
  std::string name;
  std::string color;
  bool dashed = false;
  std::vector<std::pair<double, double>> points;  // (x, y)
};

// A "nice" axis maximum (1, 2 or 5 × 10^k) at or above `v`.
double NiceMax(double v) {
  if (!(v > 0)) return 1;
  const double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= v) return m * p;
  }
  return 10 * p;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out.push_back(c);
  }
  return out;
}

// One panel at horizontal offset `x0`.
std::string Panel(double x0, const std::string& title, const std::string& y_label, double x_max,
                  const std::vector<Series>& series, std::optional<double> slo_line) {
  double y_max = slo_line.value_or(0);
  for (const Series& s : series) {
    for (const auto& p : s.points) y_max = std::max(y_max, p.second);
  }
  y_max = NiceMax(y_max * 1.05);
  const double left = x0 + kMarginL, top = kMarginT, bottom = top + kPlotH;
  auto px = [&](double x) { return left + x / x_max * kPlotW; };
  auto py = [&](double y) { return bottom - y / y_max * kPlotH; };
  std::string out =
      fmt::format("<text x=\"{:.1f}\" y=\"46\" font-size=\"14\" text-anchor=\"middle\">{}</text>\n",
                  left + kPlotW / 2, Escape(title));
  out += fmt::format(
      "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" "
      "stroke=\"#444\"/>\n",
      left, top, kPlotW, kPlotH);
  for (int i = 0; i <= 4; ++i) {
    const double yv = y_max * i / 4, xv = x_max * i / 4;
    out += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3:.1f}\" y=\"{4:.1f}\" font-size=\"10\" text-anchor=\"end\">{5:g}</text>\n",
        left, py(yv), left + kPlotW, left - 4, py(yv) + 3, yv);
    out += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" text-anchor=\"middle\">{:.3g}</text>\n",
        px(xv), bottom + 14, xv);
  }
  out += fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"middle\">offered rate "
      "(req/s)</text>\n<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"middle\" "
      "transform=\"rotate(-90 {:.1f} {:.1f})\">{}</text>\n",
      left + kPlotW / 2, bottom + 32, x0 + 14, top + kPlotH / 2, x0 + 14, top + kPlotH / 2,
      Escape(y_label));
  if (slo_line) {
    out += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#c00\" "
        "stroke-dasharray=\"2,3\"/><text x=\"{2:.1f}\" y=\"{3:.1f}\" font-size=\"10\" "
        "fill=\"#c00\" text-anchor=\"end\">SLO {4:g}</text>\n",
        left, py(*slo_line), left + kPlotW, py(*slo_line) - 3, *slo_line);
  }
  double legend_y = top + 12;
  for (const Series& s : series) {
    std::string pts;
    for (const auto& [x, y] : s.points) pts += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    const std::string dash = s.dashed ? " stroke-dasharray=\"6,3\"" : "";
    out +=
        fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n",
                    pts, s.color, dash);
    for (const auto& [x, y] : s.points) {
      out += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", px(x),
                         py(y), s.color);
    }
    out += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"{3}\" "
        "stroke-width=\"2\"{4}/><text x=\"{5:.1f}\" y=\"{6:.1f}\" font-size=\"10\">{7}</text>\n",
        left + 8, legend_y, left + 28, s.color, dash, left + 32, legend_y + 3, Escape(s.name));
    legend_y += 14;
  }
  return out;
}

}  // namespace

std::string RenderSvg(const std::vector<LevelReport>& levels, const Slo& slo,
                      const std::string& title) {
  std::vector<std::pair<double, const LevelSummary*>> pts;
  for (const LevelReport& l : levels) {
    const double x = std::isfinite(l.offered_rate) ? l.offered_rate : l.summary.request_throughput;
    pts.emplace_back(x, &l.summary);
  }
  std::sort(pts.begin(), pts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  double x_max = 0;
  for (const auto& p : pts) x_max = std::max(x_max, p.first);
  x_max = NiceMax(x_max);
  auto series = [&](const std::string& name, const std::string& color, bool dashed,
                    double (*get)(const LevelSummary&)) {
    Series s{name, color, dashed, {}};
    for (const auto& [x, summary] : pts) s.points.emplace_back(x, get(*summary));
    return s;
  };
  const std::string blue = "#1f77b4", orange = "#ff7f0e", green = "#2ca02c";
  std::string body;
  body += Panel(0, "TTFT", "ms", x_max,
                {series("p50", blue, false, [](const LevelSummary& s) { return s.ttft_ms.p50; }),
                 series("p99", blue, true, [](const LevelSummary& s) { return s.ttft_ms.p99; })},
                slo.ttft_ms);
  body += Panel(kPanelW + kGap, "TPOT", "ms", x_max,
                {series("p50", orange, false, [](const LevelSummary& s) { return s.tpot_ms.p50; }),
                 series("p99", orange, true, [](const LevelSummary& s) { return s.tpot_ms.p99; })},
                slo.tpot_ms);
  body += Panel(2 * (kPanelW + kGap), "Throughput and goodput", "req/s", x_max,
                {series("throughput", "#555", true,
                        [](const LevelSummary& s) { return s.request_throughput; }),
                 series("goodput", green, false, [](const LevelSummary& s) { return s.goodput; })},
                std::nullopt);
  // With a price, a fourth panel: what a million output tokens cost at each level.
  const bool priced =
      std::any_of(pts.begin(), pts.end(), [](const auto& p) { return p.second->cost_usd > 0; });
  if (priced) {
    body += Panel(3 * (kPanelW + kGap), "Cost per 1M output tokens", "USD", x_max,
                  {series("cost", "#d62728", false,
                          [](const LevelSummary& s) { return s.usd_per_million_output_tokens; })},
                  std::nullopt);
  }
  const double width = (priced ? 4 : 3) * kPanelW + (priced ? 3 : 2) * kGap;
  return fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
      "width=\"{0:.0f}\" height=\"{1:.0f}\" viewBox=\"0 0 {0:.0f} {1:.0f}\" "
      "font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2:.0f}\" y=\"20\" font-size=\"15\" text-anchor=\"middle\">{3}</text>\n{4}"
      "</svg>\n",
      width, kHeight, width / 2, Escape(title), body);
}

}  // namespace sluice::bench
