#pragma once

// What the outbox's integration tests share: a PostgreSQL with the "orders" database (its outbox
// table created) and "inventory", the dev broker with the events topic, and starters for
// treaty-relay on order-svc's outbox and for inventory-svc consuming the topic through its inbox.

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/dev_broker.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/service.h"
#include "integration-tests/harness/test_support.h"
#include "outbox/outbox.h"

namespace treaty::harness {

// The topic order-svc's events go to.
inline constexpr const char* kTopic = "orders.events";

class OutboxFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pg = PgCluster::Start(pg_options_);
    ASSERT_TRUE(pg.ok()) << pg.status().message();
    pg_ = std::move(*pg);
    ASSERT_OK(pg_->CreateDatabase("orders"));
    ASSERT_OK(pg_->CreateDatabase("inventory"));
    ASSERT_OK(pg_->Execute("orders", participant::Outbox::SchemaSql()));
    auto b = DevBroker::Start();
    ASSERT_TRUE(b.ok()) << b.status().message();
    broker_ = std::move(*b);
    ASSERT_OK(broker_->Command(std::string("create-topic ") + kTopic + " 4 1"));
  }

  // treaty-relay on the orders database; null (and a test failure) if it does not start.
  std::unique_ptr<Service> StartRelay(const std::string& name, int batch_size = 500,
                                      const std::string& poison = "block", int workers = 2) {
    auto r = Service::Start(ServiceSpec{.name = name,
                                        .binary = kRelayPath,
                                        .config_yaml = "listen: 127.0.0.1:0\n"
                                                       "database: { url: \"" +
                                                       pg_->Url("orders") +
                                                       "\" }\n"
                                                       "kafka: { bootstrap_servers: \"" +
                                                       broker_->bootstrap() +
                                                       "\", delivery_timeout: 3s }\n"
                                                       "batch_size: " +
                                                       std::to_string(batch_size) +
                                                       "\n"
                                                       "workers: " +
                                                       std::to_string(workers) +
                                                       "\n"
                                                       "poll_interval: 200ms\n"
                                                       "poison: " +
                                                       poison +
                                                       "\n"
                                                       "retry: { initial: 100ms, max: 1s }\n" +
                                                       relay_extra_yaml_});
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(*r) : nullptr;
  }

  // inventory-svc, consuming order events through its inbox.
  std::unique_ptr<Service> StartConsumer() {
    auto s = Service::Start(ServiceSpec{.name = "inventory-svc",
                                        .binary = kInventorySvcPath,
                                        .config_yaml = "listen: 127.0.0.1:0\n"
                                                       "database: { url: \"" +
                                                       pg_->Url("inventory") +
                                                       "\" }\n"
                                                       "kafka: { bootstrap_servers: \"" +
                                                       broker_->bootstrap() +
                                                       "\" }\n"
                                                       "events: { topic: " +
                                                       kTopic + " }\n"});
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // The first column of the first row of `sql` in `db` as a number; -1 when unreadable.
  int Count(const std::string& db, const std::string& sql) {
    auto v = pg_->QueryValue(db, sql);
    return v.ok() && !v->empty() ? std::stoi(*v) : -1;
  }

  std::unique_ptr<PgCluster> pg_;
  std::unique_ptr<DevBroker> broker_;
  // Set by a test class before SetUp: how PostgreSQL starts, and what every relay's config adds.
  PgClusterOptions pg_options_;
  std::string relay_extra_yaml_;
};

}  // namespace treaty::harness
