// The store sharded by gid (store.shards, docs/scaling.md) with real treatyd on two real
// PostgreSQL clusters: a shard's outage stops only its own transactions (2PC and saga; the
// others commit, lists and stats answer naming the dead shard, and everything accepted is final
// once it is back); treatyd refuses to start when a shard's stored slot map disagrees with its
// configuration; two treatyd on the same shards share the work, each transaction final once.

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>

#include "coordinator/store/slot_map.h"
#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

using std::chrono::seconds;

const store::SlotMap kTwoShards = store::SlotMap::Even(2);

// The `n`th gid starting with `prefix` that lives on `shard` of two.
std::string GidOn(int shard, const std::string& prefix, int n = 0) {
  for (int i = 0;; ++i) {
    std::string gid = prefix + "-" + std::to_string(i);
    if (kTwoShards.ShardOf(gid) == shard && n-- == 0) return gid;
  }
}

std::string Body(const Result<http::HttpReply>& r) {
  return r.ok() ? std::to_string(r->status) + " " + r->body : r.status().message();
}

class ShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto second = PgCluster::Start();
    ASSERT_TRUE(second.ok()) << second.status().message();
    second_ = std::move(*second);
    ASSERT_OK(second_->CreateDatabase("treaty"));
    auto stack = TreatyStack::Start(StackOptions{.saga_files = {PlaceOrderSagaFile()},
                                                 .extra_store_shards = {second_->Url("treaty")}});
    ASSERT_TRUE(stack.ok()) << stack.status().message();
    stack_ = std::move(*stack);
    ASSERT_OK(stack_->SetStock("A1", 1000));
  }

  std::string Url(const std::string& path) { return stack_->treatyd().base_url() + path; }

  // A 2PC order of one A1 with both demo services.
  std::string Order(const std::string& gid, bool wait, const std::string& sku = "A1") {
    std::string body = R"({"mode":"2pc","timeout":"30s",)" +
                       (gid.empty() ? std::string() : R"("gid":")" + gid + R"(",)") +
                       (wait ? R"("wait":true,)" : "") + R"("branches":[)" +
                       stack_->OrderBranch("order", sku, 1) + "," +
                       stack_->InventoryBranch("stock", sku, 1) + "]}";
    return body;
  }
  std::string Saga(const std::string& gid) {
    return R"({"gid":")" + gid + R"(","wait":true,"input":{"sku":"A1","qty":1,"card":"4242"}})";
  }
  std::string Query(const std::string& db, const std::string& sql, PgCluster* pg = nullptr) {
    auto v = (pg ? *pg : stack_->pg()).QueryValue(db, sql);
    return v.ok() ? *v : "error: " + v.status().message();
  }

  std::unique_ptr<PgCluster> second_;  // shard 1; the stack's own cluster holds shard 0
  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(ShardTest, EachTransactionIsStoredOnTheShardOfItsGidOnly) {
  for (int shard : {0, 1}) {
    const std::string gid = GidOn(shard, "placed");
    auto r = HttpCall("POST", Url("/v1/transactions"), Order(gid, true));
    ASSERT_TRUE(r.ok() && r->status == 200) << Body(r);
    EXPECT_EQ(ParseObject(r->body)->getValue<std::string>("status"), "committed");
    const std::string count = "SELECT count(*) FROM treaty.transactions WHERE gid = '" + gid + "'";
    EXPECT_EQ(Query("treaty", count), shard == 0 ? "1" : "0") << gid;
    EXPECT_EQ(Query("treaty", count, second_.get()), shard == 1 ? "1" : "0") << gid;
  }
  // Every shard keeps the whole map, and which shard it is.
  EXPECT_EQ(Query("treaty",
                  "SELECT shard || ' ' || shard_count || ' ' || slots FROM "
                  "treaty.shard_map"),
            "0 2 0-8191:0,8192-16383:1");
  EXPECT_EQ(
      Query("treaty", "SELECT shard || ' ' || shard_count || ' ' || slots FROM treaty.shard_map",
            second_.get()),
      "1 2 0-8191:0,8192-16383:1");
}

TEST_F(ShardTest, AShardsOutageStopsOnlyItsOwnTransactions) {
  // Accepted before the outage, on shard 1: a 2PC order whose stock prepare hangs (it retries),
  // so that it is still unfinished when shard 1 goes down. Another SKU: a hung prepare holds
  // its stock row.
  ASSERT_OK(stack_->SetStock("B1", 10));
  const std::string in_flight = GidOn(1, "in-flight");
  ASSERT_TRUE(HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                       R"({"op":"2pc/prepare","action":"hang"})")
                  ->status == 200);
  auto accepted = HttpCall("POST", Url("/v1/transactions"), Order(in_flight, false, "B1"));
  ASSERT_TRUE(accepted.ok() && accepted->status == 201) << Body(accepted);

  ASSERT_OK(second_->Stop());
  ASSERT_TRUE(HttpCall("POST", TreatyStack::Url(stack_->inventory(), "/admin/faults"),
                       R"({"op":"2pc/prepare","action":"off"})")
                  ->status == 200);

  // Shard 0's transactions commit, 2PC and saga.
  for (int i = 0; i < 3; ++i) {
    const std::string gid = GidOn(0, "live-2pc", i);
    auto r = HttpCall("POST", Url("/v1/transactions"), Order(gid, true));
    ASSERT_TRUE(r.ok() && r->status == 200) << Body(r);
    EXPECT_EQ(ParseObject(r->body)->getValue<std::string>("status"), "committed") << gid;
    EXPECT_EQ(Query("orders", "SELECT count(*) FROM orders WHERE gid = '" + gid + "'"), "1");
  }
  const std::string live_saga = GidOn(0, "live-saga");
  auto saga = HttpCall("POST", Url("/v1/sagas/place-order"), Saga(live_saga));
  ASSERT_TRUE(saga.ok() && saga->status == 200) << Body(saga);
  EXPECT_EQ(ParseObject(saga->body)->getValue<std::string>("status"), "committed");

  // Shard 1's are refused with a 503 naming the shard: nothing is accepted there.
  const std::string dead_2pc = GidOn(1, "dead-2pc");
  auto refused = HttpCall("POST", Url("/v1/transactions"), Order(dead_2pc, true));
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, 503) << refused->body;
  EXPECT_NE(refused->body.find("store shard 1"), std::string::npos) << refused->body;
  const std::string dead_saga = GidOn(1, "dead-saga");
  auto refused_saga = HttpCall("POST", Url("/v1/sagas/place-order"), Saga(dead_saga));
  ASSERT_TRUE(refused_saga.ok());
  EXPECT_EQ(refused_saga->status, 503) << refused_saga->body;
  auto get = HttpCall("GET", Url("/v1/transactions/" + in_flight));
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->status, 503) << get->body;

  // Gids treatyd makes up land on either shard: those on the live one commit, the others are
  // refused as above.
  std::set<std::string> generated_committed;
  int generated_refused = 0;
  for (int i = 0; i < 12; ++i) {
    auto r = HttpCall("POST", Url("/v1/transactions"), Order("", true));
    ASSERT_TRUE(r.ok());
    if (r->status == 503) {
      ++generated_refused;
      continue;
    }
    ASSERT_EQ(r->status, 200) << r->body;
    const std::string gid = ParseObject(r->body)->getValue<std::string>("gid");
    EXPECT_EQ(kTwoShards.ShardOf(gid), 0) << gid << " was accepted on the dead shard";
    EXPECT_EQ(ParseObject(r->body)->getValue<std::string>("status"), "committed");
    generated_committed.insert(gid);
  }
  EXPECT_FALSE(generated_committed.empty());

  // Lists and stats answer from the live shard and name the dead one.
  auto list = HttpCall("GET", Url("/v1/transactions?limit=1000"));
  ASSERT_TRUE(list.ok() && list->status == 200) << Body(list);
  auto listed = ParseObject(list->body);
  ASSERT_TRUE(listed->has("unreachable_shards")) << list->body;
  EXPECT_EQ(listed->getArray("unreachable_shards")->size(), 1u);
  EXPECT_EQ(listed->getArray("unreachable_shards")->getElement<int>(0), 1);
  EXPECT_EQ(listed->getArray("transactions")->size(), 4 + generated_committed.size());
  auto stats = HttpCall("GET", Url("/v1/stats"));
  ASSERT_TRUE(stats.ok() && stats->status == 200) << Body(stats);
  auto counted = ParseObject(stats->body);
  EXPECT_EQ(counted->getValue<int>("total"), static_cast<int>(4 + generated_committed.size()));
  EXPECT_EQ(counted->getArray("unreachable_shards")->getElement<int>(0), 1);
  // treatyd stays in service (a load balancer keeps it), saying which shard is down.
  auto ready = HttpCall("GET", Url("/readyz"));
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 200) << ready->body;
  EXPECT_EQ(ParseObject(ready->body)->getValue<std::string>("status"), "degraded");
  // Its metrics say the same, shard by shard.
  auto metrics = HttpCall("GET", Url("/metrics"));
  ASSERT_TRUE(metrics.ok() && metrics->status == 200) << Body(metrics);
  EXPECT_NE(metrics->body.find("treaty_store_shard_up{shard=\"0\"} 1\n"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("treaty_store_shard_up{shard=\"1\"} 0\n"), std::string::npos)
      << metrics->body;

  // Back: what was accepted on shard 1 finishes, and the shard takes new work again.
  ASSERT_OK(second_->Restart());
  EXPECT_EQ(stack_->WaitFinal(in_flight, seconds(120)), "committed");
  EXPECT_EQ(Query("orders", "SELECT count(*) FROM orders WHERE gid = '" + in_flight + "'"), "1");
  auto after = HttpCall("POST", Url("/v1/transactions"), Order(dead_2pc, true));
  ASSERT_TRUE(after.ok() && after->status == 200) << Body(after);
  EXPECT_EQ(ParseObject(after->body)->getValue<std::string>("status"), "committed");
  ASSERT_TRUE(WaitUntil(
      [&] {
        auto l = HttpCall("GET", Url("/v1/transactions?limit=1000"));
        auto m = HttpCall("GET", Url("/metrics"));
        return l.ok() && l->status == 200 && !ParseObject(l->body)->has("unreachable_shards") &&
               m.ok() &&
               m->body.find("treaty_store_shard_up{shard=\"1\"} 1\n") != std::string::npos;
      },
      seconds(60)));
  auto unfinished = HttpCall("GET", Url("/v1/stats"));
  ASSERT_TRUE(unfinished.ok() && unfinished->status == 200);
  auto by_status = ParseObject(unfinished->body)->getObject("by_status");
  for (const char* status : {"active", "prepared", "committing", "aborting"}) {
    EXPECT_EQ(by_status->getValue<int>(status), 0) << status << ": " << unfinished->body;
  }
  EXPECT_EQ(stack_->PreparedCount("orders").value(), 0);
  EXPECT_EQ(stack_->PreparedCount("inventory").value(), 0);
  // One A1 for each committed order (3 live, dead_2pc after, one saga, generated); B1 once.
  EXPECT_EQ(stack_->Stock("A1").value(),
            std::to_string(1000 - 5 - static_cast<int>(generated_committed.size())) + "/0/" +
                std::to_string(5 + generated_committed.size()));
  EXPECT_EQ(stack_->Stock("B1").value(), "9/0/1");
}

TEST_F(ShardTest, TwoCoordinatorsOnTheSameShardsShareTheWorkAndFinishEachTransactionOnce) {
  auto b = Service::Start(ServiceSpec{
      .name = "treatyd-b",
      .binary = kTreatydPath,
      .config_yaml = TestTreatydConfig(stack_->pg(), "",
                                       "{ initial: 50ms, max: 500ms, multiplier: 2, jitter: 0.2 }",
                                       "5s", "2s", {second_->Url("treaty")}),
      .env = {{"TREATY_NODE_ID", "node-b"}}});
  ASSERT_TRUE(b.ok()) << b.status().message();
  ASSERT_TRUE(BecomesReady(**b));
  // Begun without waiting, half on each treatyd; then treatyd A stops: what it had not
  // finished, B claims from both shards once A's leases run out.
  std::vector<std::string> gids;
  for (int i = 0; i < 40; ++i) {
    const std::string gid = "shared-" + std::to_string(i);
    const std::string base = i % 2 ? (*b)->base_url() : stack_->treatyd().base_url();
    auto r = HttpCall("POST", base + "/v1/transactions", Order(gid, false));
    ASSERT_TRUE(r.ok() && r->status == 201) << Body(r);
    gids.push_back(gid);
  }
  ASSERT_TRUE(stack_->treatyd().Kill().ok());
  for (const std::string& gid : gids) {
    std::string status;
    ASSERT_TRUE(WaitUntil(
        [&] {
          auto r = HttpCall("GET", (*b)->base_url() + "/v1/transactions/" + gid);
          if (!r.ok() || r->status != 200) return false;
          status = ParseObject(r->body)->getValue<std::string>("status");
          return status == "committed" || status == "aborted";
        },
        seconds(120)))
        << gid << " is " << status;
    EXPECT_EQ(status, "committed") << gid;
    EXPECT_EQ(Query("orders", "SELECT count(*) FROM orders WHERE gid = '" + gid + "'"), "1");
  }
  std::map<int, int> per_shard;
  for (const std::string& gid : gids) ++per_shard[kTwoShards.ShardOf(gid)];
  EXPECT_EQ(Query("treaty", "SELECT count(*) FROM treaty.transactions WHERE gid LIKE 'shared-%'"),
            std::to_string(per_shard[0]));
  EXPECT_EQ(Query("treaty", "SELECT count(*) FROM treaty.transactions WHERE gid LIKE 'shared-%'",
                  second_.get()),
            std::to_string(per_shard[1]));
  EXPECT_EQ(stack_->Stock("A1").value(), "960/0/40");
  EXPECT_EQ(stack_->PreparedCount("orders").value(), 0);
  EXPECT_EQ(stack_->PreparedCount("inventory").value(), 0);
}

// treatyd on `shards` (libpq URLs) until it exits or 60 s pass: its exit status and log.
std::pair<int, std::string> RunTreatydUntilExit(const std::vector<std::string>& shards,
                                                const TempDir& dir, const std::string& name) {
  std::string config =
      "listen: 127.0.0.1:0\nnode_id: " + name + "\nstore: { connect_timeout: 2s, shards: [";
  for (size_t i = 0; i < shards.size(); ++i) config += (i ? ", \"" : "\"") + shards[i] + "\"";
  config += "] }\nretry: { initial: 50ms, max: 500ms }\n";
  const std::string path = dir.path() + "/" + name + ".yaml";
  std::ofstream(path) << config;
  auto p = Process::Start(ProcessSpec{.name = name,
                                      .argv = {kTreatydPath, "--config", path},
                                      .log_path = dir.path() + "/" + name + ".log"});
  if (!p.ok()) return {-1, p.status().message()};
  auto code = (*p)->Wait(seconds(60));
  return {code.ok() ? *code : -1, (*p)->ReadLog()};
}

TEST(ShardMapTest, TreatydRefusesToStartWhenAShardsStoredMapDisagrees) {
  std::unique_ptr<PgCluster> pg[2];
  for (auto& c : pg) {
    auto started = PgCluster::Start();
    ASSERT_TRUE(started.ok()) << started.status().message();
    c = std::move(*started);
    ASSERT_OK(c->CreateDatabase("treaty"));
  }
  const std::string a = pg[0]->Url("treaty"), b = pg[1]->Url("treaty");
  // The first start writes the map to both shards.
  auto first = Service::Start(ServiceSpec{
      .name = "treatyd",
      .binary = kTreatydPath,
      .config_yaml = "listen: 127.0.0.1:0\nstore: { shards: [\"" + a + "\", \"" + b + "\"] }\n"});
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_TRUE(BecomesReady(**first));
  ASSERT_EQ((*first)->Stop().value(), 0);

  auto made = TempDir::Create("shard-map");
  ASSERT_TRUE(made.ok()) << made.status().message();
  TempDir dir = std::move(*made);
  // The shards listed the other way round: each is configured as the shard it is not.
  auto [swapped_code, swapped_log] = RunTreatydUntilExit({b, a}, dir, "swapped");
  EXPECT_EQ(swapped_code, 2) << swapped_log;
  EXPECT_NE(swapped_log.find("store shard"), std::string::npos) << swapped_log;
  EXPECT_NE(swapped_log.find("disagrees with the configured one: it is stored as shard"),
            std::string::npos)
      << swapped_log;
  // One shard left out: the map says two.
  auto [alone_code, alone_log] = RunTreatydUntilExit({a}, dir, "alone");
  EXPECT_EQ(alone_code, 2) << alone_log;
  EXPECT_NE(alone_log.find("store shard 0"), std::string::npos) << alone_log;
  EXPECT_NE(alone_log.find("stored as shard 0 of 2 (slots 0-8191:0,8192-16383:1), configured as "
                           "shard 0 of 1 (slots 0-16383:0)"),
            std::string::npos)
      << alone_log;
  // The stored maps are as the first start wrote them.
  EXPECT_EQ(pg[1]->QueryValue("treaty", "SELECT shard FROM treaty.shard_map").value(), "1");
  // And the right order still starts.
  ASSERT_OK((*first)->Restart());
  EXPECT_TRUE(BecomesReady(**first));
}

}  // namespace
}  // namespace treaty::harness
