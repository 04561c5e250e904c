// The gateway's parts without processes: the keys file and key lookup, the quota buckets
// on a scripted clock and OpenAI's duration format.
#include <string>

#include "gateway/quota.h"
#include "gateway/tenants.h"
#include "gtest/gtest.h"

namespace sluice::gateway {
namespace {

std::string KeysJson(const std::string& tenants) { return R"({"tenants": [)" + tenants + "]}"; }

std::string Entry(const std::string& name, const std::string& key, const std::string& extra = "") {
  return R"({"name": ")" + name + R"(", "key_sha256": ")" + Hex(Sha256(key)) + "\"" + extra + "}";
}

TEST(TenantTableTest, FindsTenantsByKeyHash) {
  auto t = TenantTable::Parse(
      KeysJson(Entry("acme", "sk-a", R"(, "requests_per_minute": 60, "max_concurrent": 4)") + "," +
               Entry("beta", "sk-b")),
      "keys.json");
  ASSERT_TRUE(t.ok()) << t.status();
  auto acme = (*t)->Find("sk-a");
  ASSERT_TRUE(acme.has_value());
  EXPECT_EQ(acme->name, "acme");
  EXPECT_EQ(acme->requests_per_minute, 60);
  EXPECT_EQ(acme->max_concurrent, 4);
  EXPECT_EQ(acme->tokens_per_minute, 0);  // absent: unlimited
  EXPECT_EQ((*t)->Find("sk-b")->name, "beta");
  EXPECT_FALSE((*t)->Find("sk-c").has_value());
  EXPECT_FALSE((*t)->Find("").has_value());
  EXPECT_FALSE((*t)->Find("sk-a ").has_value());
  // A known digest: SHA-256("abc").
  EXPECT_EQ(Hex(Sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TenantTableTest, MalformedFilesNameWhatIsWrong) {
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"{not json", "not valid JSON"},
      {R"({"tenants": [], "x": 4E4444444444})", "not valid JSON"},  // a fuzzer's find
      {R"({"tenant": []})", "\"tenants\" array"},
      {KeysJson(R"({"key_sha256": ")" + Hex(Sha256("k")) + "\"}"), "tenants[0]: \"name\""},
      {KeysJson(R"({"name": "a", "key_sha256": "abc"})"), "tenants[0]: \"key_sha256\""},
      {KeysJson(Entry("a", "k", R"(, "requests_per_minute": -1)")), "\"requests_per_minute\""},
      {KeysJson(Entry("a", "k", R"(, "max_concurrent": "4")")), "\"max_concurrent\""},
      {KeysJson(Entry("a", "k") + "," + Entry("a", "j")), "appears twice"},
      {KeysJson(Entry("a", "k") + "," + Entry("b", "k")), "same key"},
  };
  for (const Case& c : cases) {
    auto t = TenantTable::Parse(c.text, "keys.json");
    ASSERT_FALSE(t.ok()) << c.text;
    EXPECT_NE(std::string(t.status().message()).find(c.expect), std::string::npos)
        << t.status() << " should mention " << c.expect;
    EXPECT_NE(std::string(t.status().message()).find("keys.json"), std::string::npos);
  }
}

TEST(BearerKeyTest, ParsesTheAuthorizationHeader) {
  EXPECT_EQ(BearerKey("Bearer sk-1"), "sk-1");
  EXPECT_EQ(BearerKey("bearer  sk-1 "), "sk-1");
  EXPECT_EQ(BearerKey("Basic abc"), "");
  EXPECT_EQ(BearerKey("Bearer"), "");
  EXPECT_EQ(BearerKey(""), "");
}

struct FakeClock {
  double now = 1000.0;
  QuotaManager::Clock fn() {
    return [this] { return now; };
  }
};

TEST(QuotaTest, RequestsPerMinuteAdmitsExactlyTheAllowanceThenRefills) {
  FakeClock clock;
  QuotaManager q(clock.fn());
  Tenant t{"t", {}, 10, 0, 0};
  for (int i = 0; i < 10; ++i) {
    const Admission a = q.Acquire(t, {});
    ASSERT_EQ(a.refusal, Refusal::kNone) << i;
    EXPECT_EQ(a.snapshot.remaining_requests, 9 - i);
    q.Release(t, {}, 0);
  }
  Admission refused = q.Acquire(t, {});
  EXPECT_EQ(refused.refusal, Refusal::kRequests);
  EXPECT_NEAR(refused.retry_after_s, 6.0, 1e-9);  // one request refills in 60 / 10 s
  EXPECT_NEAR(refused.snapshot.reset_requests_s, 60.0, 1e-9);
  clock.now += 5.9;
  EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kRequests);
  clock.now += 0.2;
  EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);
  clock.now += 3600;  // a long idle refills to the limit, no further
  for (int i = 0; i < 10; ++i) EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);
  EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kRequests);
}

TEST(QuotaTest, UseBeyondTheReservationIsChargedAndADeficitRefuses) {
  FakeClock clock;
  QuotaManager q(clock.fn());
  Tenant t{"t", {}, 0, 600, 0};  // 10 tokens a second
  ASSERT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);
  ASSERT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);  // nothing reserved
  q.Charge(t, 500);                                     // reported while streaming
  q.Release(t, {}, -200);  // settled at 200 more than was taken: 600 - 700

  const Admission a = q.Acquire(t, {});
  EXPECT_EQ(a.refusal, Refusal::kTokens);
  EXPECT_FALSE(a.never);
  EXPECT_NEAR(a.retry_after_s, 10.1, 1e-9);  // (100 + 1) tokens at 10/s
  EXPECT_EQ(a.snapshot.remaining_tokens, 0);
  clock.now += 10.2;
  EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);
}

TEST(QuotaTest, ReservationsBoundABurstToTheMinute) {
  FakeClock clock;
  QuotaManager q(clock.fn());
  Tenant t{"t", {}, 0, 400, 0};
  const Cost cost{205, 1};  // 5 prompt tokens + max_tokens 200
  int admitted = 0;
  for (int i = 0; i < 20; ++i) admitted += q.Acquire(t, cost).refusal == Refusal::kNone;
  EXPECT_EQ(admitted, 1);  // 400 holds one reservation of 205, not two
  Admission a = q.Acquire(t, cost);
  EXPECT_EQ(a.refusal, Refusal::kTokens);
  EXPECT_NEAR(a.retry_after_s, (205 - 195) * 60.0 / 400, 1e-9);  // until 205 are back
  EXPECT_EQ(a.snapshot.remaining_tokens, 195);
  // The answer used 25 of the 205: 180 come back at once.
  q.Release(t, cost, 205 - 25);
  EXPECT_EQ(q.Acquire(t, cost).refusal, Refusal::kNone);
  // More than a minute's allowance never fits: refused for good, not for a while.
  a = q.Acquire(t, Cost{401, 1});
  EXPECT_EQ(a.refusal, Refusal::kTokens);
  EXPECT_TRUE(a.never);
}

TEST(QuotaTest, SequencesCountPromptsTimesN) {
  FakeClock clock;
  QuotaManager q(clock.fn());
  Tenant t{"t", {}, 0, 0, 4, 64};
  Admission a = q.Acquire(t, Cost{0, 240});  // 15 prompts × n 16
  EXPECT_EQ(a.refusal, Refusal::kSequences);
  EXPECT_TRUE(a.never);
  ASSERT_EQ(q.Acquire(t, Cost{0, 48}).refusal, Refusal::kNone);
  a = q.Acquire(t, Cost{0, 32});  // 80 > 64 while the first is in flight
  EXPECT_EQ(a.refusal, Refusal::kSequences);
  EXPECT_FALSE(a.never);
  EXPECT_EQ(q.SequencesInFlight("t"), 48);
  q.Release(t, Cost{0, 48}, 0);
  EXPECT_EQ(q.SequencesInFlight("t"), 0);
  EXPECT_EQ(q.Acquire(t, Cost{0, 64}).refusal, Refusal::kNone);
}

TEST(TenantTableTest, SequenceLimitDefaultsToSixteenPerConcurrentRequest) {
  auto t = TenantTable::Parse(
      KeysJson(Entry("a", "ka", R"(, "max_concurrent": 4)") + "," +
               Entry("b", "kb", R"(, "max_concurrent": 4, "max_concurrent_sequences": 10)") + "," +
               Entry("c", "kc") + "," +
               Entry("d", "kd", R"(, "max_concurrent": 9223372036854775807)")),
      "keys.json");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->Find("ka")->max_concurrent_sequences, 64);
  EXPECT_EQ((*t)->Find("kb")->max_concurrent_sequences, 10);
  EXPECT_EQ((*t)->Find("kc")->max_concurrent_sequences, 0);  // no limit
  EXPECT_EQ((*t)->Find("kd")->max_concurrent_sequences, 0);  // too large to multiply
}

TEST(QuotaTest, ConcurrencyCountsRequestsInFlight) {
  FakeClock clock;
  QuotaManager q(clock.fn());
  Tenant t{"t", {}, 0, 0, 2};
  EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);
  EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);
  const Admission a = q.Acquire(t, {});
  EXPECT_EQ(a.refusal, Refusal::kConcurrency);
  EXPECT_GE(a.retry_after_s, 1.0);
  EXPECT_EQ(q.InFlight("t"), 2);
  q.Release(t, {}, 0);
  EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);
  // Unlimited tenants are never refused.
  Tenant free{"free", {}, 0, 0, 0};
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(q.Acquire(free, {}).refusal, Refusal::kNone);
}

TEST(QuotaTest, ALowerLimitAfterReloadClampsTheBucket) {
  FakeClock clock;
  QuotaManager q(clock.fn());
  Tenant t{"t", {}, 100, 0, 0};
  ASSERT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);
  t.requests_per_minute = 2;  // 99 left, clamped to the new minute's 2
  EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);
  EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kNone);
  EXPECT_EQ(q.Acquire(t, {}).refusal, Refusal::kRequests);
}

TEST(FormatDurationTest, WritesGoStyleDurations) {
  EXPECT_EQ(FormatDuration(0), "0ms");
  EXPECT_EQ(FormatDuration(0.2501), "251ms");
  EXPECT_EQ(FormatDuration(6), "6s");
  EXPECT_EQ(FormatDuration(5.2), "6s");
  EXPECT_EQ(FormatDuration(90), "1m30s");
}

}  // namespace
}  // namespace sluice::gateway
