#include "common/http/router.h"

#include <gtest/gtest.h>

namespace treaty::http {
namespace {

ApiRequest Req(std::string method, std::string path) {
  ApiRequest r;
  r.method = std::move(method);
  r.path = std::move(path);
  return r;
}

TEST(Router, MatchesMethodAndPathWithParameters) {
  Router router;
  router.Add("GET", "/v1/transactions/{gid}", [](const ApiRequest& r) {
    return ApiResponse{200, "text/plain", "get " + r.path_params.at("gid")};
  });
  router.Add("POST", "/v1/transactions/{gid}/submit", [](const ApiRequest& r) {
    return ApiResponse{200, "text/plain", "submit " + r.path_params.at("gid")};
  });
  EXPECT_EQ(router.Dispatch(Req("GET", "/v1/transactions/g1")).body, "get g1");
  EXPECT_EQ(router.Dispatch(Req("POST", "/v1/transactions/g2/submit")).body, "submit g2");
  EXPECT_EQ(router.Dispatch(Req("GET", "/v1/transactions/g1/")).body, "get g1");
}

TEST(Router, UnknownPathIs404AndWrongMethodIs405) {
  Router router;
  router.Add("GET", "/healthz", [](const ApiRequest&) { return ApiResponse{}; });
  ApiResponse missing = router.Dispatch(Req("GET", "/nope"));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body, R"({"error":{"code":"not_found","message":"no such endpoint: /nope"}})");
  ApiResponse wrong = router.Dispatch(Req("DELETE", "/healthz"));
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(router.Dispatch(Req("GET", "/v1/transactions//")).status, 404);
}

TEST(JsonError, EscapesAndNamesTheField) {
  ApiResponse r = JsonError(400, "invalid", "bad \"x\"\n", "branches[0].prepare");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(
      r.body,
      R"({"error":{"code":"invalid","message":"bad \"x\"\n","field":"branches[0].prepare"}})");
}

}  // namespace
}  // namespace treaty::http
