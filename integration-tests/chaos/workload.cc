#include "integration-tests/chaos/workload.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>

#include <random>

#include "integration-tests/harness/http_client.h"

namespace treaty::chaos {
namespace {

constexpr int64_t kPlenty = 1000000;
constexpr int64_t kScarce = 60;  // H3 runs out early: later orders of it are refused
constexpr int64_t kCold = 2;     // a cold SKU's stock; orders of 3 are refused

struct Mode {
  const char* name;
  int weight;
};
constexpr Mode kModes[] = {{"2pc", 20},        {"tcc", 15},        {"tcc-client", 10}, {"saga", 20},
                           {"saga-adhoc", 10}, {"saga-abort", 10}, {"msg", 15}};

std::string Payload(const std::string& sku, int64_t qty) {
  return R"({"sku":")" + sku + R"(","qty":)" + std::to_string(qty) + "}";
}

std::string StatusInBody(const std::string& body) {
  try {
    Poco::JSON::Parser parser;
    auto o = parser.parse(body).extract<Poco::JSON::Object::Ptr>();
    return o->optValue<std::string>("status", "");
  } catch (const std::exception&) {
    return "";
  }
}

// One client's transaction: its requests, each recorded with its answer.
class Run {
 public:
  Run(ChaosCluster& c, HistoryWriter& h, std::mt19937_64& rng, std::string gid)
      : c_(c), h_(h), rng_(rng), gid_(std::move(gid)) {}

  // Sends one request and records the answer; returns the HTTP status (0: none) and the body.
  std::pair<int, std::string> Call(const std::string& action, int node, const std::string& method,
                                   const std::string& url, const std::string& body,
                                   Duration timeout = std::chrono::seconds(15)) {
    auto r = harness::HttpCall(method, url, body, timeout);
    HistoryEvent e{.type = "answer", .gid = gid_, .node = node, .action = action};
    if (r.ok()) {
      e.http = r->status;
      e.status = StatusInBody(r->body);
      if (r->status / 100 != 2) e.error = r->body.substr(0, 300);
    } else {
      e.error = r.status().message().substr(0, 300);
    }
    h_.Append(e);
    if (e.http == 0 || e.http == 503) unavailable_ = true;
    return {e.http, r.ok() ? r->body : std::string()};
  }

  // Whether some request found its server down or unavailable: the client then waits a little
  // before its next transaction, as a real one would, instead of spinning on refusals.
  bool unavailable() const { return unavailable_; }

  int Node() { return static_cast<int>(rng_() % ChaosCluster::kCoordinators); }
  bool Chance(int percent) { return static_cast<int>(rng_() % 100) < percent; }
  std::string Begin(int node) { return c_.coordinator_url(node) + "/v1/transactions"; }

  void TwoPc(int node, const std::string& sku, int64_t qty) {
    auto branch = [&](const std::string& id, const std::string& base) {
      return R"({"id":")" + id + R"(","prepare":")" + base + R"(/2pc/prepare","commit":")" + base +
             R"(/2pc/commit","abort":")" + base + R"(/2pc/abort","payload":)" + Payload(sku, qty) +
             "}";
    };
    Call("begin", node, "POST", Begin(node),
         R"({"gid":")" + gid_ + R"(","mode":"2pc","timeout":"10s","wait":)" +
             (Chance(70) ? "true" : "false") + R"(,"branches":[)" +
             branch("order", c_.orders_url()) + "," + branch("stock", c_.inventory_url()) + "]}");
  }

  static std::string TccBranch(const std::string& id, const std::string& base,
                               const std::string& sku, int64_t qty, bool with_try) {
    return R"({"id":")" + id + "\"," +
           (with_try ? R"("try":")" + base + R"(/tcc/try",)" : std::string()) + R"("confirm":")" +
           base + R"(/tcc/confirm","cancel":")" + base + R"(/tcc/cancel","payload":)" +
           Payload(sku, qty) + "}";
  }

  void Tcc(int node, const std::string& sku, int64_t qty) {
    Call("begin", node, "POST", Begin(node),
         R"({"gid":")" + gid_ + R"(","mode":"tcc","timeout":"10s","wait":)" +
             (Chance(70) ? "true" : "false") + R"(,"branches":[)" +
             TccBranch("order", c_.orders_url(), sku, qty, true) + "," +
             TccBranch("stock", c_.inventory_url(), sku, qty, true) + "]}");
  }

  // The client registers each branch, runs its tries itself, then submits or aborts.
  void TccClient(int node, const std::string& sku, int64_t qty) {
    auto [begun, _] = Call("begin", node, "POST", Begin(node),
                           R"({"gid":")" + gid_ + R"(","mode":"tcc","timeout":"8s"})");
    if (begun != 201) return;
    bool tried = true;
    for (const auto& [id, base] : {std::pair{std::string("order"), c_.orders_url()},
                                   std::pair{std::string("stock"), c_.inventory_url()}}) {
      auto [registered, body] =
          Call("register", node, "POST", Begin(node) + "/" + gid_ + "/branches",
               TccBranch(id, base, sku, qty, false));
      // Registered first, then tried: a try whose branch is unknown could never be cancelled.
      if (registered != 201) {
        tried = false;
        break;
      }
      auto [status, reply] =
          Call("try", -1, "POST", base + "/tcc/try",
               R"({"gid":")" + gid_ + R"(","branch_id":")" + id +
                   R"(","op":"try","mode":"tcc","payload":)" + Payload(sku, qty) + "}",
               std::chrono::seconds(5));
      if (status != 200) {
        tried = false;
        break;
      }
    }
    int end = Node();
    Call(tried ? "submit" : "abort", end, "POST",
         Begin(end) + "/" + gid_ + (tried ? "/submit" : "/abort"), R"({"wait":true})");
  }

  // A saga waited on gives up after 4 s (its coordinator paused, or slow) and aborts it at
  // another coordinator, as a client with its own deadline would.
  void Saga(int node, const std::string& sku, int64_t qty, const std::string& card, bool wait) {
    auto [status, body] =
        Call("begin", node, "POST", c_.coordinator_url(node) + "/v1/sagas/place-order",
             R"({"gid":")" + gid_ + R"(","timeout":"20s","wait":)" + (wait ? "true" : "false") +
                 R"(,"input":{"sku":")" + sku + R"(","qty":)" + std::to_string(qty) +
                 R"(,"card":")" + card + R"("}})",
             std::chrono::seconds(4));
    if (status == 0) GiveUp(node);
  }

  void SagaAdhoc(int node, const std::string& sku, int64_t qty, const std::string& card) {
    const std::string& o = c_.orders_url();
    const std::string& i = c_.inventory_url();
    auto [status, body] = Call(
        "begin", node, "POST", Begin(node),
        R"({"gid":")" + gid_ + R"(","mode":"saga","timeout":"20s","wait":)" +
            (Chance(70) ? "true" : "false") + R"(,"branches":[)" + R"({"id":"reserve","action":")" +
            i + R"(/saga/reserve","compensate":")" + i + R"(/saga/release","payload":)" +
            Payload(sku, qty) + "}," + R"({"id":"create","action":")" + o +
            R"(/saga/create","compensate":")" + o + R"(/saga/cancel","payload":)" +
            Payload(sku, qty) + "}," + R"({"id":"pay","after":["reserve","create"],"action":")" +
            o + R"(/saga/pay","compensate":")" + o + R"(/saga/refund","payload":{"card":")" + card +
            R"(","amount":)" + std::to_string(qty) + "}}]}",
        std::chrono::seconds(4));
    if (status == 0) GiveUp(node);
  }

  // A client that gives up: starts the saga, then aborts it at another coordinator while its
  // steps may still be running (what a stale owner must never outlive).
  void SagaAbort(int node, const std::string& sku, int64_t qty) {
    Saga(node, sku, qty, "4242", false);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 200));  // the client's whim
    GiveUp(node);
  }

  void GiveUp(int node) {
    int other = (node + 1 + static_cast<int>(rng_() % 2)) % ChaosCluster::kCoordinators;
    Call("abort", other, "POST", Begin(other) + "/" + gid_ + "/abort", R"({"wait":true})");
  }

  void Msg(const std::string& sku, int64_t qty) {
    Call("msg", -1, "POST", c_.orders_url() + "/msg/orders",
         R"({"gid":")" + gid_ + R"(","sku":")" + sku + R"(","qty":)" + std::to_string(qty) + "}",
         std::chrono::seconds(20));
  }

 private:
  ChaosCluster& c_;
  HistoryWriter& h_;
  std::mt19937_64& rng_;
  std::string gid_;
  bool unavailable_ = false;
};

}  // namespace

Workload::Workload(ChaosCluster& cluster, HistoryWriter& history, WorkloadOptions options)
    : cluster_(cluster), history_(history), options_(options) {}

Workload::~Workload() { Stop(); }

Result<std::map<std::string, int64_t>> Workload::SetUpStock() {
  Status st = cluster_.pg().Execute(
      "inventory",
      "INSERT INTO stock (sku, available) VALUES ('H1', " + std::to_string(kPlenty) + "), ('H2', " +
          std::to_string(kPlenty) + "), ('H3', " + std::to_string(kScarce) +
          "); INSERT INTO stock (sku, available) SELECT 'C' || lpad(n::text, 5, '0'), " +
          std::to_string(kCold) + " FROM generate_series(0, " +
          std::to_string(options_.cold_skus - 1) + ") AS n");
  if (!st.ok()) return st;
  std::map<std::string, int64_t> initial = {{"H1", kPlenty}, {"H2", kPlenty}, {"H3", kScarce}};
  for (int n = 0; n < options_.cold_skus; ++n) {
    std::string digits = std::to_string(n);
    initial["C" + std::string(5 - digits.size(), '0') + digits] = kCold;
  }
  return initial;
}

void Workload::Start() {
  for (int i = 0; i < options_.clients; ++i) threads_.emplace_back([this, i] { Client(i); });
}

void Workload::Stop() {
  stop_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
}

std::map<std::string, int64_t> Workload::Started() const {
  std::lock_guard<std::mutex> lock(mu_);
  return started_;
}

void Workload::Client(int index) {
  std::mt19937_64 rng(options_.seed * 1000003 + static_cast<uint64_t>(index));
  int total_weight = 0;
  for (const Mode& m : kModes) total_weight += m.weight;
  for (int n = 0; !stop_; ++n) {
    int pick = static_cast<int>(rng() % static_cast<uint64_t>(total_weight));
    std::string mode;
    for (const Mode& m : kModes) {
      if (pick < m.weight) {
        mode = m.name;
        break;
      }
      pick -= m.weight;
    }
    int64_t qty = 1 + static_cast<int64_t>(rng() % 3);
    std::string sku;
    int where = static_cast<int>(rng() % 100);
    if (where < 30 && mode != "msg") {
      int cold = next_cold_++;
      if (cold < options_.cold_skus) {
        std::string digits = std::to_string(cold);
        sku = "C" + std::string(5 - digits.size(), '0') + digits;
      }
    } else if (where < 45) {
      sku = "H3";
    }
    if (sku.empty()) sku = rng() % 2 == 0 ? "H1" : "H2";
    std::string card = rng() % 10 == 0 ? "declined" : "4242";
    std::string gid = "s" + std::to_string(options_.seed) + "-" + mode + "-" +
                      std::to_string(index) + "-" + std::to_string(n);
    int node = static_cast<int>(rng() % ChaosCluster::kCoordinators);
    bool is_saga = mode == "saga" || mode == "saga-adhoc";
    history_.Append(HistoryEvent{.type = "invoke",
                                 .gid = gid,
                                 .mode = mode,
                                 .node = mode == "msg" ? -1 : node,
                                 .sku = sku,
                                 .qty = qty,
                                 .card = is_saga ? card : ""});
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++started_[mode];
    }
    Run run(cluster_, history_, rng, gid);
    if (mode == "2pc") run.TwoPc(node, sku, qty);
    if (mode == "tcc") run.Tcc(node, sku, qty);
    if (mode == "tcc-client") run.TccClient(node, sku, qty);
    if (mode == "saga") run.Saga(node, sku, qty, card, run.Chance(70));
    if (mode == "saga-adhoc") run.SagaAdhoc(node, sku, qty, card);
    if (mode == "saga-abort") run.SagaAbort(node, sku, qty);
    if (mode == "msg") run.Msg(sku, qty);
    if (run.unavailable()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace treaty::chaos
