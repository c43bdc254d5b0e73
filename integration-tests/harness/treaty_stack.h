#pragma once

// The whole Treaty stack as real processes, for integration tests and the demo: a throwaway
// PostgreSQL with one database each for treatyd ("treaty"), order-svc ("orders") and
// inventory-svc ("inventory"); treatyd; and both demo participants, all on free loopback ports.
// Config knobs are tuned for tests (short retries and sweeps) unless overridden.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "integration-tests/harness/dev_broker.h"
#include "integration-tests/harness/pg_cluster.h"
#include "integration-tests/harness/service.h"

namespace treaty::harness {

struct StackOptions {
  // The dev broker, treaty-relay on order-svc's outbox, and inventory-svc consuming the events.
  bool with_broker = false;
  std::string treatyd_extra_yaml;  // appended to treatyd's config
  std::string retry = "{ initial: 50ms, max: 500ms, multiplier: 2, jitter: 0.2 }";
  std::vector<std::pair<std::string, std::string>> treatyd_env;
  std::string sweep_older_than = "30s";  // participants' presumed-abort sweep
  std::string sweep_interval = "200ms";
  // Saga definition files for treatyd (absolute paths). When any is given, the participants'
  // ports are chosen first and passed to treatyd as TREATY_DEMO_ORDER_URL and
  // TREATY_DEMO_INVENTORY_URL, which config/sagas/place-order.yaml uses.
  std::vector<std::string> saga_files;
  // A client token treatyd accepts (put it in treatyd_extra_yaml's auth): the participants and
  // the stack's own status calls send it.
  std::string client_token;
  std::string participant_extra_yaml;  // appended to both participants' configs
  std::string lease = "5s";            // treatyd's scheduler.lease
  std::string branch_call = "2s";      // treatyd's timeouts.branch_call
  // treaty-relay's mode (with_broker): "polling", or "wal" (PostgreSQL then runs with
  // wal_level = logical).
  std::string relay_mode = "polling";
  // More store shards (libpq URLs) after the stack's own "treaty" database, which is shard 0:
  // treatyd is then configured with store.shards.
  std::vector<std::string> extra_store_shards;
  // PostgreSQL with its default durability (fsync, synchronous_commit on), for tests of what
  // a crash of it keeps; otherwise both are off, for speed.
  bool durable_store = false;
  // treatyd's store when not the stack's own PostgreSQL (e.g. a pg_auto_failover formation's
  // multi-host URL); the stack's "treaty" database is then left unused.
  std::string store_url;
  // order-svc's database, and so treaty-relay's, when not the stack's own "orders" (e.g. a
  // pg_auto_failover formation's multi-host URL); OrderCount and PreparedCount("orders") then
  // read the stack's unused "orders" database, so ask the formation instead.
  std::string orders_db_url;
};

class TreatyStack {
 public:
  static Result<std::unique_ptr<TreatyStack>> Start(StackOptions options = {});

  PgCluster& pg() { return *pg_; }
  DevBroker* broker() { return broker_.get(); }
  Service& treatyd() { return *treatyd_; }
  Service& orders() { return *orders_; }
  Service& inventory() { return *inventory_; }
  Service* relay() { return relay_.get(); }

  // Restarts treatyd (after Kill or Stop) with `env` (plus the saga URLs, when sagas are
  // configured) and waits until it is ready.
  Status RestartTreatyd(std::vector<std::pair<std::string, std::string>> env = {});

  // The URL of a participant's endpoint, e.g. Url(inventory(), "/2pc/prepare").
  static std::string Url(Service& s, const std::string& path) { return s.base_url() + path; }

  // A 2PC branch as JSON for the inventory or order service.
  std::string InventoryBranch(const std::string& id, const std::string& sku, int qty);
  std::string OrderBranch(const std::string& id, const std::string& sku, int qty);

  // A TCC branch (try, confirm, cancel) for the inventory or order service; `with_try` false for
  // a client-driven registration.
  std::string InventoryTccBranch(const std::string& id, const std::string& sku, int qty,
                                 bool with_try = true);
  std::string OrderTccBranch(const std::string& id, const std::string& sku, int qty,
                             bool with_try = true);
  // The protocol body a participant receives, for calling one directly.
  static std::string OpBody(const std::string& gid, const std::string& branch_id,
                            const std::string& op, const std::string& mode, const std::string& sku,
                            int qty);

  // Sets a SKU's stock (available = n, nothing reserved or sold).
  Status SetStock(const std::string& sku, int available);
  // "available/reserved/sold" of a SKU.
  Result<std::string> Stock(const std::string& sku);
  // Rows in the orders table for `gid` ("" for all).
  Result<int> OrderCount(const std::string& gid = "");
  // Prepared transactions left in a database.
  Result<int> PreparedCount(const std::string& database);

  // Empties treatyd's store and builds its schema as migrations 1..`version` left it, as an older
  // treatyd would have (for upgrade tests; treatyd must be stopped).
  Status RecreateStoreAt(int version);

  // Waits until treatyd reports the transaction final; returns its status ("" on timeout).
  std::string WaitFinal(const std::string& gid, Duration timeout = std::chrono::seconds(60));
  // treatyd's status for a gid, or "" when unknown or unreachable.
  std::string StatusOf(const std::string& gid);

 private:
  TreatyStack() = default;
  std::unique_ptr<PgCluster> pg_;
  std::unique_ptr<DevBroker> broker_;
  std::unique_ptr<Service> treatyd_;
  std::unique_ptr<Service> orders_;
  std::unique_ptr<Service> inventory_;
  std::unique_ptr<Service> relay_;
  std::vector<std::pair<std::string, std::string>> saga_env_;  // the participants' URLs
  std::string client_token_;
};

// Waits (up to 30 s) until a treatyd answers /readyz with 200.
bool BecomesReady(Service& treatyd);

// The environment that runs a process with its wall clock `offset` off ("+30s", "-20s"), through
// libfaketime; its monotonic clock stays true.
std::vector<std::pair<std::string, std::string>> ClockSkewEnv(const std::string& offset);

// config/sagas/place-order.yaml in the source tree.
std::string PlaceOrderSagaFile();

// Treaty's config for tests: fast retries, a fixed node id (so a restart reclaims its work).
// With `extra_shards`, the store is sharded: pg's "treaty" database first, then those.
std::string TestTreatydConfig(
    const PgCluster& pg, const std::string& extra_yaml = "",
    const std::string& retry = "{ initial: 50ms, max: 500ms, multiplier: 2, jitter: 0.2 }",
    const std::string& lease = "5s", const std::string& branch_call = "2s",
    const std::vector<std::string>& extra_shards = {}, const std::string& store_url = "");

}  // namespace treaty::harness
