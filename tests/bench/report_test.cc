// The JSON document's fields, the max-goodput pick, the table and the SVG.
#include "bench/serving/report.h"

#include <cmath>
#include <limits>
#include <string>

#include "gtest/gtest.h"

namespace sluice::bench {
namespace {

LevelReport Level(double rate, double attainment, double goodput) {
  LevelReport l;
  l.offered_rate = rate;
  l.summary.num_issued = 10;
  l.summary.completed = 10;
  l.summary.slo_attainment = attainment;
  l.summary.goodput = goodput;
  l.summary.request_throughput = rate;
  l.summary.ttft_ms = {10 * rate, 9 * rate, 20 * rate, 30 * rate, 10};
  l.summary.tpot_ms = {2, 2, 3, 4, 10};
  return l;
}

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

TEST(ReportTest, JsonHasThePerRateFields) {
  const auto doc =
      RunJson({{"url", "u"}}, {Level(1, 1.0, 1.0), Level(2, 0.95, 1.9), Level(4, 0.5, 2.0)}, 0.9);
  ASSERT_EQ(doc["results"].size(), 3u);
  const auto& r = doc["results"][1];
  for (const char* key : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"}) {
    for (const char* stat : {"mean", "p50", "p90", "p99"}) {
      EXPECT_TRUE(r[key].contains(stat)) << key << "." << stat;
    }
  }
  for (const char* key : {"request_throughput", "output_token_throughput", "goodput",
                          "slo_attainment", "request_rate", "completed", "failed"}) {
    EXPECT_TRUE(r.contains(key)) << key;
  }
  EXPECT_DOUBLE_EQ(r["ttft_ms"]["p90"].get<double>(), 40.0);
  EXPECT_DOUBLE_EQ(r["request_rate"].get<double>(), 2.0);
  // Rate 4 has the most goodput but misses 90% attainment; rate 2 is the answer.
  EXPECT_DOUBLE_EQ(doc["max_goodput"]["request_rate"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(doc["max_goodput"]["goodput"].get<double>(), 1.9);
  EXPECT_EQ(doc["config"]["url"], "u");
}

TEST(ReportTest, NoQualifyingLevelAndNonFiniteRates) {
  const auto doc = RunJson({}, {Level(std::numeric_limits<double>::infinity(), 0.2, 1.0)}, 0.9);
  EXPECT_TRUE(doc["max_goodput"].is_null());
  EXPECT_TRUE(doc["results"][0]["request_rate"].is_null());
  LevelReport closed = Level(std::nan(""), 1.0, 1.0);
  closed.concurrency = 4;
  EXPECT_TRUE(LevelJson(closed)["closed_loop"].get<bool>());
  EXPECT_NE(FormatTable({closed}, Slo{}).find("c=4"), std::string::npos);
}

TEST(ReportTest, TableHasOneRowPerLevel) {
  const std::string t = FormatTable({Level(1, 1, 1), Level(2, 1, 2)}, Slo{100.0, 20.0});
  EXPECT_EQ(Count(t, "\n"), 4u);  // SLO line, header, two rows
  EXPECT_NE(t.find("TTFT 100 ms"), std::string::npos);
}

TEST(ReportTest, SvgHasThreePanelsWithAPointPerLevel) {
  const std::string svg =
      RenderSvg({Level(4, 1, 4), Level(1, 1, 1), Level(2, 1, 2)}, Slo{50.0, 5.0}, "t<1>");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(Count(svg, "<polyline"), 6u);  // p50, p99 ×2 panels; throughput, goodput
  EXPECT_EQ(Count(svg, "<circle"), 18u);   // 6 series × 3 levels
  EXPECT_EQ(Count(svg, "SLO "), 2u);       // TTFT and TPOT SLO lines
  EXPECT_NE(svg.find("t&lt;1&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

}  // namespace
}  // namespace sluice::bench
