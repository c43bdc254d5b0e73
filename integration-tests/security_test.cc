// Hostile and unauthorized input against a real treatyd: tokens and roles, the participant
// allowlist and redirects, limits (413, 429, slow clients), TLS, and secrets kept out of logs.

#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "common/http/http_server.h"
#include "common/http/router.h"
#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

constexpr const char* kClientToken = "client-token-4f1c9a7e5b2d";
constexpr const char* kAdminToken = "admin-token-8e3b6d0a9c14";
// A caller of its own for the rate test: the participants, which hold kClientToken, call
// treatyd too (their retention lists unfinished transactions) and share that token's bucket.
constexpr const char* kRateToken = "client-token-rate-7d21a0";

std::string AuthYaml() {
  return std::string("auth: { client_tokens: [") + kClientToken + ", " + kRateToken +
         "], admin_tokens: [" + kAdminToken + "] }\n";
}

HttpReply Call(Service& s, const std::string& method, const std::string& path,
               const std::string& token = "", const std::string& body = "") {
  auto r = HttpCall(method, s.base_url() + path, body, http::CallOptions{}.WithBearer(token));
  EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.status().message();
  return r.ok() ? *r : HttpReply{};
}

std::string ErrorCode(const HttpReply& r) {
  try {
    return ParseObject(r.body)->getObject("error")->getValue<std::string>("code");
  } catch (...) {
    return "(no error: " + r.body + ")";
  }
}

// A server in the test process, on loopback, answering every call with `answer`; counts calls.
class FakeParticipant {
 public:
  static std::unique_ptr<FakeParticipant> Start(std::function<http::ApiResponse()> answer,
                                                const std::string& cert = "",
                                                const std::string& key = "",
                                                const std::string& client_ca = "") {
    std::unique_ptr<FakeParticipant> p(new FakeParticipant());
    auto handler = [raw = p.get(), answer](const http::ApiRequest&) {
      ++raw->calls;
      return answer();
    };
    p->router_.Add("POST", "/{mode}/{op}", handler);
    auto server = http::HttpServer::Start(
        http::HttpServerOptions{
            .tls_cert_file = cert, .tls_key_file = key, .tls_client_ca_file = client_ca},
        p->router_);
    EXPECT_TRUE(server.ok()) << server.status().message();
    if (!server.ok()) return nullptr;
    p->server_ = std::move(*server);
    return p;
  }
  std::string Url(const std::string& path, bool tls = false) const {
    return std::string(tls ? "https" : "http") +
           "://127.0.0.1:" + std::to_string(server_->address().port) + path;
  }
  uint16_t port() const { return server_->address().port; }
  std::atomic<int> calls{0};

 private:
  FakeParticipant() = default;
  http::Router router_;
  std::unique_ptr<http::HttpServer> server_;
};

std::string TwoPcBody(const std::string& gid, const std::string& base,
                      const std::string& extra = "") {
  return R"({"gid":")" + gid +
         R"(","mode":"2pc","wait":true,"timeout":"2s","branches":[{"id":"p",)" + R"("prepare":")" +
         base + R"(/2pc/prepare","commit":")" + base + R"(/2pc/commit",)" + R"("abort":")" + base +
         R"(/2pc/abort")" + extra + "}]}";
}

// ---------------------------------------------------------------------------------------------

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = TreatyStack::Start(
        StackOptions{.treatyd_extra_yaml = AuthYaml(), .client_token = kClientToken});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
  }
  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(AuthTest, EachCaseOfTokensAndRoles) {
  Service& t = stack_->treatyd();
  // No token, a malformed header, an unknown token: 401, naming what is wrong, never the token.
  HttpReply none = Call(t, "GET", "/v1/transactions");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(ErrorCode(none), "unauthenticated");
  auto basic = HttpCall("GET", t.base_url() + "/v1/transactions", "",
                        http::CallOptions{.headers = {{"Authorization", "Basic dXNlcjpwdw=="}}});
  ASSERT_OK(basic);
  EXPECT_EQ(basic->status, 401);
  HttpReply wrong = Call(t, "GET", "/v1/transactions", "client-token-4f1c9a7e5b2X");
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.body.find("client-token"), std::string::npos) << wrong.body;

  // A client token runs transactions and reads them...
  ASSERT_OK(stack_->SetStock("A1", 10));
  HttpReply begun = Call(t, "POST", "/v1/transactions", kClientToken,
                         R"({"gid":"auth-1","mode":"2pc","wait":true,"branches":[)" +
                             stack_->InventoryBranch("stock", "A1", 1) + "]}");
  EXPECT_EQ(begun.status, 200) << begun.body;
  EXPECT_EQ(Call(t, "GET", "/v1/transactions/auth-1", kClientToken).status, 200);
  // ...but is refused the operator's actions: 403.
  HttpReply retry = Call(t, "POST", "/v1/transactions/auth-1/retry", kClientToken);
  EXPECT_EQ(retry.status, 403);
  EXPECT_EQ(ErrorCode(retry), "forbidden");
  EXPECT_EQ(Call(t, "POST", "/v1/sagas/reload", kClientToken).status, 403);
  // An admin token may do both.
  EXPECT_EQ(Call(t, "POST", "/v1/transactions/auth-1/retry", kAdminToken).status, 409)
      << "past the guard: a committed transaction has nothing to retry";
  EXPECT_EQ(Call(t, "GET", "/v1/transactions", kAdminToken).status, 200);

  // Health, metrics, the console page and the API description need no token.
  for (const char* path : {"/healthz", "/readyz", "/metrics", "/", "/openapi.yaml"}) {
    EXPECT_EQ(Call(t, "GET", path).status, 200) << path;
  }
  // The participants were given the client token: their sweep could ask treatyd (no 401 logged).
  EXPECT_EQ(stack_->StatusOf("auth-1"), "committed");

  // treatyctl with and without a token.
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {kTreatyctlPath, "--url", t.base_url()});
    auto dir = TempDir::Create("ctl");
    auto p = Process::Start(
        ProcessSpec{.name = "treatyctl", .argv = args, .log_path = dir->File("out")});
    auto code = (*p)->Wait(std::chrono::seconds(30));
    return std::pair<int, std::string>{code.ok() ? *code : -1, (*p)->ReadLog()};
  };
  auto [code, out] = run({"status", "auth-1"});
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("401"), std::string::npos) << out;
  std::tie(code, out) = run({"--token", kClientToken, "status", "auth-1"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("committed"), std::string::npos) << out;
}

TEST(AuthConfigTest, BeyondLoopbackWithoutTokensRefusesToStartUnlessAuthNone) {
  auto pg = PgCluster::Start();
  ASSERT_OK(pg);
  ASSERT_OK((*pg)->CreateDatabase("treaty"));
  auto dir = TempDir::Create("auth-config");
  ASSERT_OK(dir);
  std::string open = TestTreatydConfig(**pg);
  open.replace(open.find("127.0.0.1:0"), 11, "0.0.0.0:0");
  std::ofstream(dir->File("open.yaml")) << open;
  auto p = Process::Start(ProcessSpec{.name = "treatyd",
                                      .argv = {kTreatydPath, "--config", dir->File("open.yaml")},
                                      .log_path = dir->File("open.log")});
  ASSERT_OK(p);
  auto code = (*p)->Wait(std::chrono::seconds(30));
  ASSERT_OK(code);
  EXPECT_EQ(*code, 2);
  EXPECT_NE((*p)->ReadLog().find("listen: 0.0.0.0 is reachable from other machines"),
            std::string::npos)
      << (*p)->ReadLog();

  auto none = Service::Start(ServiceSpec{
      .name = "treatyd", .binary = kTreatydPath, .config_yaml = open + "auth: { none: true }\n"});
  ASSERT_OK(none);
  EXPECT_TRUE(WaitUntil(
      [&] { return (*none)->process().ReadLog().find("auth.none is set") != std::string::npos; },
      std::chrono::seconds(10)))
      << "no warning logged";
  ASSERT_TRUE(WaitUntil([&] { return Call(**none, "GET", "/readyz").status == 200; },
                        std::chrono::seconds(30)));
  EXPECT_EQ(Call(**none, "GET", "/v1/transactions").status, 200) << "auth.none: no token needed";
}

// ---------------------------------------------------------------------------------------------

TEST(AllowlistTest, ABranchToAnOutsideAddressIsRefusedAndNothingIsStored) {
  auto s = TreatyStack::Start();
  ASSERT_OK(s);
  Service& t = (*s)->treatyd();
  HttpReply r =
      Call(t, "POST", "/v1/transactions", "", TwoPcBody("outside-1", "http://10.20.30.40:8080"));
  EXPECT_EQ(r.status, 400) << r.body;
  auto err = ParseObject(r.body)->getObject("error");
  EXPECT_EQ(err->getValue<std::string>("field"), "branches[0].prepare");
  EXPECT_NE(err->getValue<std::string>("message").find("participants.allow"), std::string::npos);
  EXPECT_EQ(Call(t, "GET", "/v1/transactions/outside-1").status, 404);
  // user@host tricks and other schemes are refused too.
  EXPECT_EQ(Call(t, "POST", "/v1/transactions", "",
                 TwoPcBody("outside-2", "http://127.0.0.1@10.20.30.40:8080"))
                .status,
            400);
  HttpReply msg = Call(t, "POST", "/v1/transactions", "",
                       R"({"gid":"outside-3","mode":"msg","query":"http://169.254.169.254/latest",)"
                       R"("messages":[{"topic":"t","payload":{}}]})");
  EXPECT_EQ(msg.status, 400);
  EXPECT_EQ(ParseObject(msg.body)->getObject("error")->getValue<std::string>("field"), "query");
}

TEST(AllowlistTest, ARedirectFromAParticipantIsNotFollowed) {
  // The sink stands for an internal service the redirect points at; it must never be called.
  auto sink = FakeParticipant::Start([] {
    return http::ApiResponse{200, "application/json", "{}"};
  });
  ASSERT_NE(sink, nullptr);
  const std::string target = sink->Url("/2pc/prepare");
  auto redirector = FakeParticipant::Start([target] {
    http::ApiResponse r{307, "application/json", "{}"};
    r.headers.emplace_back("Location", target);
    return r;
  });
  ASSERT_NE(redirector, nullptr);
  auto s = TreatyStack::Start(StackOptions{
      .treatyd_extra_yaml =
          "participants: { allow: [\"127.0.0.1:" + std::to_string(redirector->port()) + "\"] }\n"});
  ASSERT_OK(s);
  Service& t = (*s)->treatyd();
  // The sink itself is outside the allowlist...
  EXPECT_EQ(Call(t, "POST", "/v1/transactions", "", TwoPcBody("direct", sink->Url(""))).status,
            400);
  // ...and a redirect to it is an unknown answer, not a success: the prepare never counts, and
  // at its deadline the transaction is decided to abort (whose calls get 307s too, so it stays
  // aborting, retrying, with the answer in last_error).
  HttpReply r =
      Call(t, "POST", "/v1/transactions", "", TwoPcBody("redirected", redirector->Url("")));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(WaitUntil([&] { return (*s)->StatusOf("redirected") == "aborting"; },
                        std::chrono::seconds(30)))
      << (*s)->StatusOf("redirected");
  EXPECT_GE(redirector->calls.load(), 1);
  EXPECT_EQ(sink->calls.load(), 0) << "treatyd followed the redirect";
  HttpReply tx = Call(t, "GET", "/v1/transactions/redirected");
  EXPECT_NE(tx.body.find("HTTP 307"), std::string::npos) << tx.body;
}

// ---------------------------------------------------------------------------------------------

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = TreatyStack::Start(StackOptions{
        .treatyd_extra_yaml = AuthYaml() +
                              "limits: { max_body_bytes: 8192, max_payload_bytes: 512, "
                              "max_branches: 3, rate_per_second: 5, rate_burst: 10, "
                              "read_timeout: 1s }\n",
        .client_token = kClientToken});
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
  }
  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(LimitsTest, BodyPayloadAndBranchLimitsAnswerWithTheirStatus) {
  Service& t = stack_->treatyd();
  HttpReply big = Call(t, "POST", "/v1/transactions", kClientToken,
                       R"({"mode":"2pc","pad":")" + std::string(20000, 'x') + "\"}");
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(ErrorCode(big), "too_large");
  HttpReply payload = Call(t, "POST", "/v1/transactions", kClientToken,
                           TwoPcBody("payload-1", "http://127.0.0.1:9",
                                     R"(,"payload":{"blob":")" + std::string(1000, 'y') + "\"}"));
  EXPECT_EQ(payload.status, 400);
  EXPECT_EQ(ParseObject(payload.body)->getObject("error")->getValue<std::string>("field"),
            "branches[0].payload");
  std::string branches;
  for (int i = 0; i < 4; ++i) {
    branches +=
        std::string(i ? "," : "") + R"({"id":"b)" + std::to_string(i) +
        R"(","prepare":"http://127.0.0.1:9/p","commit":"http://127.0.0.1:9/c","abort":"http://127.0.0.1:9/a"})";
  }
  HttpReply many = Call(t, "POST", "/v1/transactions", kClientToken,
                        R"({"gid":"many","mode":"2pc","branches":[)" + branches + "]}");
  EXPECT_EQ(many.status, 400);
  EXPECT_EQ(ParseObject(many.body)->getObject("error")->getValue<std::string>("field"), "branches");
}

TEST_F(LimitsTest, OverTheRateACallerGets429AndLaterIsServedAgain) {
  Service& t = stack_->treatyd();
  int refused = 0, served = 0;
  for (int i = 0; i < 40; ++i) {
    HttpReply r = Call(t, "GET", "/v1/stats", kRateToken);
    if (r.status == 429) {
      ++refused;
      EXPECT_EQ(ErrorCode(r), "too_many_requests");
    } else if (r.status == 200) {
      ++served;
    }
  }
  EXPECT_GE(served, 10) << "the burst is served";
  EXPECT_GT(refused, 0) << "40 requests at once exceed a burst of 10";
  // Another caller (the admin token) has a bucket of its own.
  EXPECT_EQ(Call(t, "GET", "/v1/stats", kAdminToken).status, 200);
  EXPECT_TRUE(WaitUntil([&] { return Call(t, "GET", "/v1/stats", kRateToken).status == 200; },
                        std::chrono::seconds(5)))
      << "the bucket refills";
}

TEST_F(LimitsTest, ASlowClientIsClosedWhileOthersAreServed) {
  Service& t = stack_->treatyd();
  Poco::Net::StreamSocket slow;
  std::string host_port = t.base_url().substr(std::string("http://").size());
  slow.connect(Poco::Net::SocketAddress(host_port));
  // Half a request, then silence.
  std::string partial =
      "POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mo";
  slow.sendBytes(partial.data(), static_cast<int>(partial.size()));
  EXPECT_EQ(Call(t, "GET", "/healthz").status, 200) << "others are served meanwhile";
  slow.setReceiveTimeout(Poco::Timespan(1, 0));
  bool closed = WaitUntil(
      [&] {
        char buf[512];
        try {
          int n = slow.receiveBytes(buf, sizeof buf);
          return n <= 0 || std::string(buf, static_cast<size_t>(n)).find("HTTP/1.1") == 0;
        } catch (const Poco::TimeoutException&) {
          return false;
        } catch (const Poco::Exception&) {
          return true;  // reset
        }
      },
      std::chrono::seconds(15), std::chrono::milliseconds(10));
  EXPECT_TRUE(closed) << "the silent client was never cut off";
  EXPECT_EQ(Call(t, "GET", "/healthz").status, 200);
}

// ---------------------------------------------------------------------------------------------

// A CA and a certificate for 127.0.0.1 signed by it, made with the openssl command.
struct TestPki {
  TempDir dir;
  std::string ca, cert, key;
  std::string client_cert, client_key;  // a client certificate from the same CA (mTLS)
};

Result<TestPki> MakePki() {
  auto dir = TempDir::Create("pki");
  if (!dir.ok()) return dir.status();
  TestPki pki{std::move(*dir), "", "", "", "", ""};
  pki.client_cert = pki.dir.File("client.pem");
  pki.client_key = pki.dir.File("client.key");
  pki.ca = pki.dir.File("ca.pem");
  pki.cert = pki.dir.File("server.pem");
  pki.key = pki.dir.File("server.key");
  std::ofstream(pki.dir.File("ext.cnf"))
      << "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n";
  std::vector<std::vector<std::string>> steps = {
      {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
       pki.dir.File("ca.key"), "-out", pki.ca, "-days", "2", "-subj", "/CN=Treaty Test CA"},
      {"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", pki.key, "-out",
       pki.dir.File("server.csr"), "-subj", "/CN=127.0.0.1"},
      {"openssl", "x509", "-req", "-in", pki.dir.File("server.csr"), "-CA", pki.ca, "-CAkey",
       pki.dir.File("ca.key"), "-CAcreateserial", "-out", pki.cert, "-days", "2", "-extfile",
       pki.dir.File("ext.cnf")},
      {"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", pki.client_key, "-out",
       pki.dir.File("client.csr"), "-subj", "/CN=treatyd"},
      {"openssl", "x509", "-req", "-in", pki.dir.File("client.csr"), "-CA", pki.ca, "-CAkey",
       pki.dir.File("ca.key"), "-CAcreateserial", "-out", pki.client_cert, "-days", "2"},
  };
  for (auto& argv : steps) {
    auto p = Process::Start(
        ProcessSpec{.name = "openssl", .argv = argv, .log_path = pki.dir.File("openssl.log")});
    if (!p.ok()) return p.status();
    auto code = (*p)->Wait(std::chrono::seconds(60));
    if (!code.ok() || *code != 0) return Status::Internal("openssl failed: " + (*p)->ReadLog());
  }
  // treatyd may run as another user than the test: let it read the key.
  for (const std::string& key : {pki.key, pki.client_key}) {
    std::filesystem::permissions(key, std::filesystem::perms::others_read,
                                 std::filesystem::perm_options::add);
  }
  return pki;
}

TEST(TlsTest, HttpsListenerAndVerifiedHttpsParticipants) {
  auto pki = MakePki();
  ASSERT_OK(pki);
  auto https_participant = FakeParticipant::Start(
      [] {
        return http::ApiResponse{200, "application/json", "{}"};
      },
      pki->cert, pki->key);
  ASSERT_NE(https_participant, nullptr);
  auto s = TreatyStack::Start(
      StackOptions{.treatyd_extra_yaml = "tls: { ca_file: \"" + pki->ca + "\" }\n"});
  ASSERT_OK(s);
  Service& t = (*s)->treatyd();
  // treatyd calls an https participant whose certificate it verifies against tls.ca_file.
  HttpReply r = Call(t, "POST", "/v1/transactions", "",
                     TwoPcBody("tls-1", https_participant->Url("", /*tls=*/true)));
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"committed\""), std::string::npos) << r.body;
  EXPECT_EQ(https_participant->calls.load(), 2) << "prepare and commit, over TLS";

  // An HTTPS treatyd: a client that trusts the CA gets in, one that does not is refused.
  std::string config = TestTreatydConfig(
      (*s)->pg(), "tls: { cert_file: \"" + pki->cert + "\", key_file: \"" + pki->key + "\" }\n");
  auto secure = Service::Start(ServiceSpec{.name = "treatyd-tls",
                                           .binary = kTreatydPath,
                                           .config_yaml = config,
                                           .env = {{"TREATY_NODE_ID", "tls-node"}}});
  ASSERT_OK(secure);
  std::string url = "https://" + (*secure)->base_url().substr(std::string("http://").size());
  auto trusted = HttpCall("GET", url + "/healthz", "", http::CallOptions{.ca_file = pki->ca});
  ASSERT_OK(trusted);
  EXPECT_EQ(trusted->status, 200);
  auto untrusted = HttpCall("GET", url + "/healthz", "", http::CallOptions{});
  EXPECT_FALSE(untrusted.ok()) << "a certificate from an unknown CA was accepted";
  auto plain = HttpCall("GET", (*secure)->base_url() + "/healthz", "", http::CallOptions{});
  EXPECT_FALSE(plain.ok() && plain->status == 200) << "plain HTTP was served on the TLS port";
}

TEST(TlsTest, AParticipantThatRequiresAClientCertificateGetsTreatydsOne) {
  auto pki = MakePki();
  ASSERT_OK(pki);
  auto strict = FakeParticipant::Start(
      [] {
        return http::ApiResponse{200, "application/json", "{}"};
      },
      pki->cert, pki->key, /*client_ca=*/pki->ca);
  ASSERT_NE(strict, nullptr);
  // With its client certificate treatyd gets through...
  auto s = TreatyStack::Start(
      StackOptions{.treatyd_extra_yaml = "tls: { ca_file: \"" + pki->ca +
                                         "\", client_cert_file: \"" + pki->client_cert +
                                         "\", client_key_file: \"" + pki->client_key + "\" }\n"});
  ASSERT_OK(s);
  HttpReply r = Call((*s)->treatyd(), "POST", "/v1/transactions", "",
                     TwoPcBody("mtls-1", strict->Url("", /*tls=*/true)));
  EXPECT_NE(r.body.find("\"committed\""), std::string::npos) << r.body;
  EXPECT_EQ(strict->calls.load(), 2);
  // ...and without one the participant never sees a request: the prepare stays unanswered.
  auto plain = TreatyStack::Start(
      StackOptions{.treatyd_extra_yaml = "tls: { ca_file: \"" + pki->ca + "\" }\n"});
  ASSERT_OK(plain);
  HttpReply refused = Call((*plain)->treatyd(), "POST", "/v1/transactions", "",
                           TwoPcBody("mtls-2", strict->Url("", /*tls=*/true)));
  EXPECT_EQ(refused.body.find("\"committed\""), std::string::npos) << refused.body;
  EXPECT_EQ(strict->calls.load(), 2) << "a request without a client certificate was served";
}

// ---------------------------------------------------------------------------------------------

TEST(SecretsTest, NoSecretAppearsInAnyLogOfAFullRun) {
  const std::string db_password = "db-pass-73c1e2f0aa";
  auto s = TreatyStack::Start(StackOptions{.treatyd_extra_yaml = AuthYaml(),
                                           .saga_files = {PlaceOrderSagaFile()},
                                           .client_token = kClientToken});
  ASSERT_OK(s);
  TreatyStack& stack = **s;
  // The store URL carries a password (the test cluster trusts loopback, so any password works).
  ASSERT_OK(stack.treatyd().Stop());
  std::string url = stack.pg().Url("treaty");
  url.insert(url.find("postgres@") + std::string("postgres").size(), ":" + db_password);
  ASSERT_OK(stack.RestartTreatyd({{"TREATY_STORE_URL", url}}));
  ASSERT_OK(stack.SetStock("A1", 10));
  Service& t = stack.treatyd();
  EXPECT_EQ(Call(t, "POST", "/v1/transactions", kClientToken,
                 R"({"gid":"secret-1","mode":"2pc","wait":true,"branches":[)" +
                     stack.InventoryBranch("stock", "A1", 1) + "]}")
                .status,
            200);
  EXPECT_EQ(Call(t, "POST", "/v1/sagas/place-order", kClientToken,
                 R"({"gid":"secret-2","wait":true,"input":{"sku":"A1","qty":1,"card":"declined"}})")
                .status,
            200);
  Call(t, "GET", "/v1/transactions", "wrong-token-but-logged?");
  Call(t, "POST", "/v1/sagas/reload", kClientToken);
  std::string console = Call(t, "GET", "/").body + Call(t, "GET", "/console/console.js").body;
  for (Service* svc : {&stack.treatyd(), &stack.orders(), &stack.inventory()}) {
    std::string log = svc->process().ReadLog();
    EXPECT_FALSE(log.empty());
    for (const std::string& secret :
         {std::string(kClientToken), std::string(kAdminToken), db_password}) {
      EXPECT_EQ(log.find(secret), std::string::npos) << svc->process().name() << " logged a secret";
      EXPECT_EQ(console.find(secret), std::string::npos);
    }
  }
  EXPECT_NE(stack.treatyd().process().ReadLog().find("****"), std::string::npos)
      << "the masked store URL is logged at start";
}

}  // namespace
}  // namespace treaty::harness
