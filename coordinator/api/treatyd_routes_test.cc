// docs/openapi.yaml against the route table treatyd serves: every route documented, every
// documented operation served. The real TransactionsApi over the in-memory core supplies the
// v1 routes exactly as treatyd registers them.

#include "coordinator/api/treatyd_routes.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>

#include "coordinator/console/console_assets.h"
#include "coordinator/testing/in_memory_coordinator.h"

namespace treaty::api {
namespace {

using Operations = std::set<std::string>;  // "GET /v1/transactions/{gid}"

std::string Upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

Operations Documented() {
  YAML::Node spec = YAML::Load(std::string(console::OpenApiDocument()));
  Operations out;
  for (const auto& path : spec["paths"]) {
    for (const auto& op : path.second) {
      std::string verb = op.first.as<std::string>();
      if (verb == "parameters" || verb == "summary" || verb == "description") continue;
      out.insert(Upper(verb) + " " + path.first.as<std::string>());
    }
  }
  return out;
}

class TreatydRoutesTest : public ::testing::Test {
 protected:
  TreatydRoutesTest() : transactions_(core_.service, core_.driver.processors(), nullptr) {
    auto ok = [] { return http::ApiResponse{200, "application/json", "{}"}; };
    RegisterTreatydRoutes(router_, transactions_, OperatorEndpoints{ok, ok, ok, ok});
  }

  Operations Served() const {
    Operations out;
    for (const auto& [method, pattern] : router_.Routes()) out.insert(method + " " + pattern);
    return out;
  }

  core::testing::InMemoryCoordinator core_;
  TransactionsApi transactions_;
  http::Router router_;
};

TEST_F(TreatydRoutesTest, EveryServedRouteIsDocumented) {
  Operations documented = Documented();
  for (const std::string& op : Served()) {
    EXPECT_TRUE(documented.count(op)) << op << " is served but not in docs/openapi.yaml";
  }
}

TEST_F(TreatydRoutesTest, EveryDocumentedOperationIsServed) {
  Operations served = Served();
  Operations documented = Documented();
  ASSERT_GT(documented.size(), 10u) << "the spec's paths were not read";
  for (const std::string& op : documented) {
    EXPECT_TRUE(served.count(op)) << op << " is in docs/openapi.yaml but treatyd does not serve it";
  }
}

TEST_F(TreatydRoutesTest, EachRoutesAccessIsTheDocumentedOne) {
  YAML::Node spec = YAML::Load(std::string(console::OpenApiDocument()));
  for (const auto& [method, pattern] : router_.Routes()) {
    YAML::Node op = spec["paths"][pattern][method == "GET" ? "get" : "post"];
    ASSERT_TRUE(op.IsDefined()) << method << " " << pattern;
    const bool documented_public = op["security"].IsDefined() && op["security"].size() == 0;
    const bool documented_admin = op["responses"]["403"].IsDefined();
    http::Access access = router_.AccessOf(method, pattern);
    EXPECT_EQ(access == http::Access::kPublic, documented_public) << method << " " << pattern;
    EXPECT_EQ(access == http::Access::kAdmin, documented_admin) << method << " " << pattern;
  }
}

TEST_F(TreatydRoutesTest, TheConsoleIsServedWithItsContentTypes) {
  http::ApiRequest page{.method = "GET", .path = "/"};
  http::ApiResponse r = router_.Dispatch(page);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  EXPECT_NE(r.body.find("<title>Treaty console</title>"), std::string::npos);
  bool csp = false;
  for (const auto& [name, value] : r.headers) csp |= name == "Content-Security-Policy";
  EXPECT_TRUE(csp);

  r = router_.Dispatch(http::ApiRequest{.method = "GET", .path = "/console/console.js"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/javascript; charset=utf-8");
  r = router_.Dispatch(http::ApiRequest{.method = "GET", .path = "/console/console.css"});
  EXPECT_EQ(r.content_type, "text/css; charset=utf-8");
  r = router_.Dispatch(http::ApiRequest{.method = "GET", .path = "/console/openapi.yaml"});
  EXPECT_EQ(r.status, 404) << "only the page's script and style are console files";
  r = router_.Dispatch(http::ApiRequest{.method = "GET", .path = "/openapi.yaml"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, std::string(console::OpenApiDocument()));
}

// The REST layer holds no rule of any mode: a field only some modes read is refused for the
// others, naming the modes that read it (from the processors), and each mode's own rules come
// from its processor, still naming the field.
TEST_F(TreatydRoutesTest, EachModesFieldsAndRulesComeFromItsProcessor) {
  auto begin = [&](const std::string& body) {
    return router_.Dispatch(
        http::ApiRequest{.method = "POST", .path = "/v1/transactions", .body = body});
  };
  auto error = [](const http::ApiResponse& r) {
    Poco::JSON::Parser parser;
    auto o = parser.parse(r.body).extract<Poco::JSON::Object::Ptr>()->getObject("error");
    return std::make_pair(o->optValue<std::string>("field", ""),
                          o->getValue<std::string>("message"));
  };
  const std::string twopc_branch =
      R"({"id":"a","prepare":"http://p/p","commit":"http://p/c","abort":"http://p/a"})";
  const std::string tcc_branch =
      R"({"id":"a","try":"http://p/t","confirm":"http://p/c","cancel":"http://p/x"})";

  http::ApiResponse r =
      begin(R"({"mode":"2pc","query":"http://q/q","branches":[)" + twopc_branch + "]}");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error(r),
            std::make_pair(std::string("query"), std::string("applies to mode msg only")));

  r = begin(R"({"mode":"2pc","sequential":true,"branches":[)" + twopc_branch + "]}");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error(r),
            std::make_pair(std::string("sequential"), std::string("applies to mode tcc only")));

  r = begin(R"({"mode":"msg","query":"http://q/q","timeout":"5s",)"
            R"("messages":[{"topic":"t","payload":1}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error(r).first, "timeout") << r.body;

  r = begin(R"({"mode":"msg","query":"http://q/q","branches":[{"id":"a","action":"http://p/a",)"
            R"("after":["b"]}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(error(r).first, "branches[0].after") << r.body;

  r = begin(R"({"mode":"saga","branches":[{"id":"a","action":"http://p/a","after":["b"]}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(error(r).second.find("unknown step"), std::string::npos) << r.body;

  r = begin(R"({"gid":"seq","mode":"tcc","sequential":true,"branches":[)" + tcc_branch + "]}");
  EXPECT_EQ(r.status, 201) << r.body;
  auto stored = core_.store.Load("seq", false);
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->sequential) << "the TCC processor reads sequential";
  EXPECT_TRUE(core_.store.Load("seq", false)->submitted);
}

}  // namespace
}  // namespace treaty::api
