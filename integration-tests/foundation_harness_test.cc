// The harness itself, against the real things: a throwaway PostgreSQL cluster and the dev Kafka
// broker in its own process, reached by separate client processes.

#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <filesystem>
#include <pqxx/pqxx>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/dev_broker.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/test_support.h"

namespace treaty::harness {
namespace {

bool ProcessGone(pid_t pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

TEST(PgClusterTest, RunsPreparedTransactionsAndLeavesNothingBehind) {
  pid_t pid = -1;
  std::string root;
  {
    auto pg = PgCluster::Start();
    ASSERT_TRUE(pg.ok()) << pg.status().message();
    pid = (*pg)->pid();
    root = (*pg)->root_dir();
    ASSERT_GT(pid, 0);
    ASSERT_OK((*pg)->CreateDatabase("shop"));

    pqxx::connection conn((*pg)->ConnectionString("shop"));
    pqxx::nontransaction sql(conn);
    sql.exec("CREATE TABLE stock (sku text PRIMARY KEY, qty int)");
    sql.exec("BEGIN");
    sql.exec("INSERT INTO stock VALUES ('A1', 5)");
    sql.exec("PREPARE TRANSACTION 'treaty:g1:stock'");
    EXPECT_EQ(sql.exec("SELECT gid FROM pg_prepared_xacts")[0][0].as<std::string>(),
              "treaty:g1:stock");
    EXPECT_EQ(sql.exec("SELECT count(*) FROM stock")[0][0].as<int>(), 0)
        << "a prepared transaction's rows are not visible before COMMIT PREPARED";
    sql.exec("COMMIT PREPARED 'treaty:g1:stock'");
    EXPECT_EQ(sql.exec("SELECT qty FROM stock WHERE sku = 'A1'")[0][0].as<int>(), 5);
    EXPECT_EQ(sql.exec("SELECT count(*) FROM pg_prepared_xacts")[0][0].as<int>(), 0);
  }
  EXPECT_TRUE(ProcessGone(pid)) << "postmaster " << pid << " still exists";
  EXPECT_FALSE(std::filesystem::exists(root)) << root << " was not removed";
  EXPECT_TRUE(ProcessesUsing(root).empty()) << "a process still runs under " << root;
}

TEST(PgClusterTest, RestartKeepsPortAndData) {
  auto pg = PgCluster::Start();
  ASSERT_TRUE(pg.ok()) << pg.status().message();
  ASSERT_OK((*pg)->Execute("postgres", "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"));
  uint16_t port = (*pg)->port();
  ASSERT_OK((*pg)->Stop());
  EXPECT_FALSE((*pg)->Running());
  EXPECT_FALSE((*pg)->QueryValue("postgres", "SELECT 1").ok()) << "a stopped server answered";
  ASSERT_OK((*pg)->Restart());
  EXPECT_EQ((*pg)->port(), port);
  auto v = (*pg)->QueryValue("postgres", "SELECT x FROM kept");
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(*v, "42");
}

// Runs the probe to the end and returns its exit status; its stdout lines go to `out`.
int RunProbe(const std::vector<std::string>& args, const std::string& log,
             std::vector<std::string>* out = nullptr) {
  std::vector<std::string> argv = {kKafkaProbePath};
  argv.insert(argv.end(), args.begin(), args.end());
  auto p = Process::Start(ProcessSpec{.name = "kafka-probe " + args[0],
                                      .argv = argv,
                                      .env = {},
                                      .log_path = log,
                                      .cwd = {},
                                      .run_as = {},
                                      .pipe_stdin = false,
                                      .pipe_stdout = out != nullptr});
  if (!p.ok()) {
    ADD_FAILURE() << p.status().message();
    return -1;
  }
  if (out) {
    while (auto line = (*p)->ReadLine(std::chrono::seconds(60))) out->push_back(*line);
  }
  auto code = (*p)->Wait(std::chrono::seconds(90));
  return code.ok() ? *code : -1;
}

class DevBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = TempDir::Create("probe");
    ASSERT_TRUE(dir.ok());
    dir_ = std::move(*dir);
    auto b = DevBroker::Start();
    ASSERT_TRUE(b.ok()) << b.status().message();
    broker_ = std::move(*b);
  }

  TempDir dir_;
  std::unique_ptr<DevBroker> broker_;
};

TEST_F(DevBrokerTest, MessageProducedByOneProcessIsConsumedByAnother) {
  EXPECT_EQ(broker_->bootstrap().rfind("127.0.0.1:", 0), 0u) << broker_->bootstrap();
  ASSERT_EQ(RunProbe({"produce", "--bootstrap", broker_->bootstrap(), "--topic", "orders", "--key",
                      "order-7", "--value", "{\"placed\":true}"},
                     dir_.File("produce.log")),
            0);
  std::vector<std::string> got;
  ASSERT_EQ(RunProbe({"consume", "--bootstrap", broker_->bootstrap(), "--topic", "orders",
                      "--count", "1"},
                     dir_.File("consume.log"), &got),
            0);
  EXPECT_EQ(got, (std::vector<std::string>{"order-7\t{\"placed\":true}"}));
}

TEST_F(DevBrokerTest, ABrokerTakenDownRefusesDeliveryUntilItIsBack) {
  ASSERT_OK(broker_->Command("create-topic events 1 1"));
  ASSERT_OK(broker_->Command("down 1"));
  EXPECT_EQ(RunProbe({"produce", "--bootstrap", broker_->bootstrap(), "--topic", "events",
                      "--value", "lost", "--timeout-ms", "1500"},
                     dir_.File("produce-down.log")),
            1)
      << "a message was acknowledged by a broker that is down";
  ASSERT_OK(broker_->Command("up 1"));
  ASSERT_EQ(RunProbe({"produce", "--bootstrap", broker_->bootstrap(), "--topic", "events",
                      "--value", "kept"},
                     dir_.File("produce-up.log")),
            0);
  std::vector<std::string> got;
  ASSERT_EQ(RunProbe({"consume", "--bootstrap", broker_->bootstrap(), "--topic", "events",
                      "--count", "1"},
                     dir_.File("consume.log"), &got),
            0);
  EXPECT_EQ(got, (std::vector<std::string>{"\tkept"}));
}

TEST_F(DevBrokerTest, InjectedProduceErrorsAreRetriedWithoutDuplicates) {
  ASSERT_OK(broker_->Command("create-topic retried 1 1"));
  // ApiKey 0 is Produce; 6 is NOT_LEADER_OR_FOLLOWER, which a producer retries.
  ASSERT_OK(broker_->Command("request-errors 0 6 6 6"));
  ASSERT_EQ(RunProbe({"produce", "--bootstrap", broker_->bootstrap(), "--topic", "retried", "--key",
                      "k", "--value", "m", "--count", "3"},
                     dir_.File("produce.log")),
            0);
  std::vector<std::string> got;
  ASSERT_EQ(RunProbe({"consume", "--bootstrap", broker_->bootstrap(), "--topic", "retried",
                      "--count", "3", "--settle-ms", "1000"},
                     dir_.File("consume.log"), &got),
            0);
  EXPECT_EQ(got, (std::vector<std::string>{"k\tm-0", "k\tm-1", "k\tm-2"}));
  EXPECT_FALSE(broker_->Command("bogus").ok());
}

}  // namespace
}  // namespace treaty::harness
