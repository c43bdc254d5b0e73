// Hostile input against a real treatyd (#25): ids that are not ids, NUL characters, URLs that
// climb out of an allowlisted prefix, and failures whose cause must stay in the log. Every
// refusal is a 4xx JSON error naming the field, and nothing is stored.

#include <Poco/JSON/Object.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "integration-tests/harness/binaries.h"
#include "integration-tests/harness/http_client.h"
#include "integration-tests/harness/process.h"
#include "integration-tests/harness/temp_dir.h"
#include "integration-tests/harness/test_support.h"
#include "integration-tests/harness/treaty_stack.h"

namespace treaty::harness {
namespace {

HttpReply Call(Service& s, const std::string& method, const std::string& path) {
  auto r = HttpCall(method, s.base_url() + path);
  EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.status().message();
  return r.ok() ? *r : HttpReply{};
}

std::string FieldOf(const HttpReply& r) {
  try {
    return ParseObject(r.body)->getObject("error")->getValue<std::string>("field");
  } catch (...) {
    return "(no field: " + r.body + ")";
  }
}

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = TreatyStack::Start();
    ASSERT_TRUE(s.ok()) << s.status().message();
    stack_ = std::move(*s);
  }
  HttpReply Call(const std::string& method, const std::string& path, const std::string& body = "") {
    auto r = HttpCall(method, stack_->treatyd().base_url() + path, body);
    EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.status().message();
    return r.ok() ? *r : HttpReply{};
  }
  std::string TwoPc(const std::string& gid, const std::string& prepare) {
    const std::string base = stack_->inventory().base_url();
    return R"({"gid":")" + gid + R"(","mode":"2pc","branches":[{"id":"s","prepare":")" + prepare +
           R"(","commit":")" + base + R"(/2pc/commit","abort":")" + base +
           R"(/2pc/abort","payload":{"sku":"A1","qty":1}}]})";
  }
  std::unique_ptr<TreatyStack> stack_;
};

TEST_F(HostileTest, AnIdInThePathOrQueryThatIsNoIdIsRefusedBeforeTheStoreSeesIt) {
  for (const auto& [method, path] : std::vector<std::pair<std::string, std::string>>{
           {"GET", "/v1/transactions/a%ff%fe"},
           {"POST", "/v1/transactions/a%ff%fe/retry"},
           {"POST", "/v1/transactions/a%ff%fe/submit"},
           {"POST", "/v1/transactions/a%ff%fe/abort"},
           {"POST", "/v1/transactions/a%ff%fe/branches"},
           {"GET", "/v1/transactions/a%20b"}}) {
    HttpReply r = Call(method, path, "{}");
    EXPECT_EQ(r.status, 400) << method << " " << path << ": " << r.body;
    EXPECT_EQ(FieldOf(r), "gid") << method << " " << path;
  }
  HttpReply list = Call("GET", "/v1/transactions?after=a%ff%fe");
  EXPECT_EQ(list.status, 400) << list.body;
  EXPECT_EQ(FieldOf(list), "after");
}

TEST_F(HostileTest, TheCharacterNulIsRefusedInAnyKeyOrStringNamingWhereItIs) {
  const std::string base = stack_->inventory().base_url();
  std::string in_key = R"({"gid":"nul-1","mode":"2pc","branches":[{"id":"s","prepare":")" + base +
                       R"(/2pc/prepare","commit":")" + base + R"(/2pc/commit","abort":")" + base +
                       R"(/2pc/abort","payload":{"sku":"A1","k\u0000x":1}}]})";
  HttpReply key = Call("POST", "/v1/transactions", in_key);
  EXPECT_EQ(key.status, 400) << key.body;
  EXPECT_EQ(FieldOf(key), "body");
  EXPECT_NE(key.body.find("a key must not contain"), std::string::npos) << key.body;
  EXPECT_EQ(Call("GET", "/v1/transactions/nul-1").status, 404) << "a refused request was stored";

  HttpReply in_string =
      Call("POST", "/v1/transactions", R"({"gid":"nul-2","mode":"tcc","note":"a\u0000b"})");
  EXPECT_EQ(in_string.status, 400) << in_string.body;
  EXPECT_EQ(FieldOf(in_string), "note");
}

TEST(HostileAllowlistTest, AnAllowlistedPrefixAdmitsNoPathThatClimbsOutOfIt) {
  auto s = TreatyStack::Start(StackOptions{
      .treatyd_extra_yaml = "participants: { allow: [\"http://127.0.0.1:9/treaty/\"] }\n"});
  ASSERT_TRUE(s.ok()) << s.status().message();
  Service& t = (*s)->treatyd();
  auto begin = [&](const std::string& gid, const std::string& prepare) {
    std::string body = R"({"gid":")" + gid + R"(","mode":"2pc","branches":[{"id":"s","prepare":")" +
                       prepare + R"(","commit":"http://127.0.0.1:9/treaty/c",)" +
                       R"("abort":"http://127.0.0.1:9/treaty/a"}]})";
    auto r = HttpCall("POST", t.base_url() + "/v1/transactions", body);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : HttpReply{};
  };
  for (const std::string url :
       {"http://127.0.0.1:9/treaty/../admin/x", "http://127.0.0.1:9/treaty/%2e%2e/admin/x",
        "http://127.0.0.1:9/treaty/%2E%2E%2Fadmin", "http://127.0.0.1:9/treaty/./../admin",
        "http://127.0.0.1:9/treaty/%252e%252e/admin", "http://127.0.0.1:9/treaty/..;x/admin"}) {
    HttpReply r = begin("climb", url);
    EXPECT_EQ(r.status, 400) << url << ": " << r.body;
    EXPECT_EQ(FieldOf(r), "branches[0].prepare") << url;
  }
  // Inside the prefix it is accepted (the participant is down: it is only stored and tried).
  EXPECT_EQ(begin("inside", "http://127.0.0.1:9/treaty/p").status, 201);
}

TEST_F(HostileTest, AFailureOfTheStoreKeepsItsOwnWordsInTheLogNotInTheAnswer) {
  ASSERT_OK(stack_->pg().Stop());
  HttpReply r = Call("GET", "/v1/transactions/some-gid");
  ASSERT_OK(stack_->pg().Restart());
  EXPECT_EQ(r.status, 503) << r.body;
  const std::string port = std::to_string(stack_->pg().port());
  EXPECT_EQ(r.body.find(port), std::string::npos) << "the database's address leaked: " << r.body;
  EXPECT_EQ(r.body.find("connection"), std::string::npos) << r.body;
  const size_t id_at = r.body.find("request ");
  ASSERT_NE(id_at, std::string::npos) << r.body;
  const std::string id = r.body.substr(id_at + 8, r.body.find(',', id_at) - id_at - 8);
  EXPECT_NE(stack_->treatyd().process().ReadLog().find("\"request_id\":\"" + id + "\""),
            std::string::npos)
      << "the cause is not logged under " << id;
}

// A participant on loopback that answers prepares badly, one connection at a time: "trickle"
// sends a 200 with a 60-byte body one byte every 500 ms (30 s in all); "cut" sends a 200 that
// announces 100 bytes, sends 10 and resets the connection. Any other op is answered 200 at once.
class BadParticipant {
 public:
  explicit BadParticipant(std::string mode)
      : mode_(std::move(mode)), socket_(Poco::Net::SocketAddress("127.0.0.1", 0)) {
    thread_ = std::thread([this] { Serve(); });
  }
  ~BadParticipant() {
    stopping_ = true;
    socket_.close();
    thread_.join();
  }
  std::string Url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(socket_.address().port()) + path;
  }
  int prepares() const { return prepares_.load(); }
  // A trickled answer that the caller stopped reading before its end.
  bool cut_off() const { return cut_off_.load(); }

 private:
  void Serve() {
    while (!stopping_) {
      Poco::Net::StreamSocket c;
      try {
        if (!socket_.poll(Poco::Timespan(0, 100000), Poco::Net::Socket::SELECT_READ)) continue;
        c = socket_.acceptConnection();
      } catch (const std::exception&) {
        continue;
      }
      std::thread([this, c]() mutable { Answer(c); }).detach();
    }
  }
  void Answer(Poco::Net::StreamSocket c) {
    try {
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        int n = c.receiveBytes(buf, sizeof buf);
        if (n <= 0) return;
        request.append(buf, static_cast<size_t>(n));
      }
      const bool prepare = request.find("/prepare") != std::string::npos;
      if (!prepare || stopping_) {
        const std::string ok =
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
        c.sendBytes(ok.data(), static_cast<int>(ok.size()));
        return;
      }
      ++prepares_;
      if (mode_ == "cut") {
        const std::string head =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            "{\"status\":";
        c.sendBytes(head.data(), static_cast<int>(head.size()));
        c.setLinger(true, 0);  // closed with a reset, mid-body
        c.close();
        return;
      }
      const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n";
      c.sendBytes(head.data(), static_cast<int>(head.size()));
      for (int i = 0; i < 60 && !stopping_; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the trickle itself
        if (c.sendBytes(" ", 1) != 1) {
          cut_off_ = true;
          return;
        }
      }
    } catch (const std::exception&) {
      cut_off_ = true;  // the caller closed the connection mid-answer
    }
  }

  const std::string mode_;
  Poco::Net::ServerSocket socket_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> prepares_{0};
  std::atomic<bool> cut_off_{false};
  std::thread thread_;
};

TEST_F(HostileTest, ATricklingParticipantIsCutOffAtTheCallsDeadlineAndDecidesNothing) {
  BadParticipant trickler("trickle");
  ASSERT_OK(stack_->SetStock("A1", 10));
  std::string body = R"({"gid":"trickle-1","mode":"2pc","timeout":"4s","branches":[)" +
                     stack_->InventoryBranch("stock", "A1", 1) + R"(,{"id":"slow","prepare":")" +
                     trickler.Url("/2pc/prepare") + R"(","commit":")" +
                     trickler.Url("/2pc/commit") + R"(","abort":")" + trickler.Url("/2pc/abort") +
                     R"("}]})";
  HttpReply r = Call("POST", "/v1/transactions", body);
  ASSERT_EQ(r.status, 201) << r.body;
  // The trickle would take 30 s; the call's 2 s (timeouts.branch_call) end it, and the 4 s
  // deadline aborts the transaction: a 200 that never finished arriving commits nothing.
  EXPECT_EQ(stack_->WaitFinal("trickle-1", std::chrono::seconds(60)), "aborted");
  EXPECT_TRUE(WaitUntil([&] { return trickler.cut_off(); }, std::chrono::seconds(30)))
      << "treatyd read the trickle to its end";
  EXPECT_EQ(stack_->Stock("A1").value(), "10/0/0");
  EXPECT_EQ(stack_->PreparedCount("inventory").value(), 0);
}

TEST_F(HostileTest, AnAnswerCutShortIsNoAnswer) {
  BadParticipant cutter("cut");
  std::string body = R"({"gid":"cut-1","mode":"2pc","timeout":"2s","branches":[{"id":"cut",)"
                     R"("prepare":")" +
                     cutter.Url("/2pc/prepare") + R"(","commit":")" + cutter.Url("/2pc/commit") +
                     R"(","abort":")" + cutter.Url("/2pc/abort") + R"("}]})";
  HttpReply r = Call("POST", "/v1/transactions", body);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(stack_->WaitFinal("cut-1", std::chrono::seconds(60)), "aborted")
      << "a 200 whose body was cut by a reset counted as prepared";
  EXPECT_GE(cutter.prepares(), 1);
  HttpReply tx = Call("GET", "/v1/transactions/cut-1");
  EXPECT_NE(tx.body.find("cut short"), std::string::npos) << tx.body;
}

TEST(HostileConnectionsTest, IdleAndSlowClientsHoldNoOneUpAndSlowOnesAreCutAtTheDeadline) {
  auto s = TreatyStack::Start(
      StackOptions{.treatyd_extra_yaml = "limits: { read_timeout: 2s, max_connections: 1024 }\n"});
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_OK((*s)->SetStock("A1", 10));
  Service& t = (*s)->treatyd();
  const std::string host = t.base_url().substr(t.base_url().find("//") + 2);
  const Poco::Net::SocketAddress address(host);
  // 1,500 clients that connect and say nothing, and 200 that send a header byte every 500 ms.
  std::vector<Poco::Net::StreamSocket> idle(1500), slow(200);
  for (auto& c : idle) c.connect(address);
  const std::string start = "POST /v1/transactions HTTP/1.1\r\nHost: x\r\nX-Slow: ";
  for (auto& c : slow) {
    c.connect(address);
    c.sendBytes(start.data(), static_cast<int>(start.size()));
  }
  std::atomic<bool> done{false};
  std::atomic<int> cut{0};
  std::thread trickle([&] {
    std::vector<bool> closed(slow.size(), false);
    for (int round = 0; round < 60 && !done; ++round) {  // 30 s at most
      for (size_t i = 0; i < slow.size(); ++i) {
        if (closed[i]) continue;
        try {
          if (slow[i].sendBytes("x", 1) != 1) throw std::runtime_error("closed");
        } catch (const std::exception&) {
          closed[i] = true;
          ++cut;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the trickle's pace
    }
  });
  // Meanwhile valid requests are answered, and a 2PC commits.
  int answered = 0;
  for (int i = 0; i < 50; ++i) {
    auto r = HttpCall("GET", t.base_url() + "/v1/stats", "", std::chrono::seconds(5));
    if (r.ok() && r->status == 200) ++answered;
  }
  EXPECT_EQ(answered, 50) << "valid requests were not answered during the attack";
  std::string body = R"({"gid":"under-attack","mode":"2pc","wait":true,"branches":[)" +
                     (*s)->OrderBranch("order", "A1", 1) + "," +
                     (*s)->InventoryBranch("stock", "A1", 1) + "]}";
  auto tx = HttpCall("POST", t.base_url() + "/v1/transactions", body, std::chrono::seconds(30));
  ASSERT_TRUE(tx.ok()) << tx.status().message();
  EXPECT_EQ(tx->status, 200) << tx->body;
  EXPECT_NE(tx->body.find("\"committed\""), std::string::npos) << tx->body;
  // Every slow client is cut off: the deadline covers the whole request, however it trickles.
  EXPECT_TRUE(WaitUntil([&] { return cut.load() == static_cast<int>(slow.size()); },
                        std::chrono::seconds(25)))
      << cut.load() << " of " << slow.size() << " slow clients were disconnected";
  done = true;
  trickle.join();
}

TEST_F(HostileTest, ClientsThatResetWhileTheirOversizedBodyIsRefusedDoNotBringTheServerDown) {
  const std::string url = stack_->treatyd().base_url();
  const Poco::Net::SocketAddress address(url.substr(url.find("//") + 2));
  const std::string head =
      "POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n";
  const std::string chunk(200 << 10, 'x');
  for (int i = 0; i < 20; ++i) {
    Poco::Net::StreamSocket c;
    c.connect(address);
    c.sendBytes(head.data(), static_cast<int>(head.size()));
    try {
      c.sendBytes(chunk.data(), static_cast<int>(chunk.size()));
    } catch (const std::exception&) {  // refused already: fine
    }
    // Gone while the server drains what it was sent: with a reset, or with the rest of the body
    // and the end of the stream arriving together.
    if (i % 2 == 0) c.setLinger(true, 0);
    c.close();
  }
  EXPECT_EQ(Call("GET", "/healthz").status, 200);
  EXPECT_TRUE(stack_->treatyd().process().Running()) << "treatyd died";
}

// Nine levels of nine aliases: about 600 bytes that expand to 9^9 nodes.
std::string AliasBomb(const std::string& indent) {
  std::string out;
  const std::string names = "abcdefghi";
  for (size_t level = 0; level < names.size(); ++level) {
    out += indent + names[level] + ": &" + names[level] + " [";
    for (int i = 0; i < 9; ++i) {
      out += (i ? "," : "") +
             (level == 0 ? std::string("\"x\"") : "*" + std::string(1, names[level - 1]));
    }
    out += "]\n";
  }
  return out;
}

TEST(HostileFilesTest, SagaFilesThatExplodeOrAreHugeAreRefusedAndTheLoadedOnesStay) {
  auto dir = TempDir::Create("hostile-sagas");
  ASSERT_TRUE(dir.ok());
  std::filesystem::copy_file(PlaceOrderSagaFile(), dir->File("place-order.yaml"));
  auto s = TreatyStack::Start(StackOptions{.saga_files = {dir->File("*.yaml")}});
  ASSERT_TRUE(s.ok()) << s.status().message();
  Service& t = (*s)->treatyd();
  auto reload = [&] {
    auto r = HttpCall("POST", t.base_url() + "/v1/sagas/reload", "", std::chrono::seconds(10));
    EXPECT_TRUE(r.ok()) << "the reload did not answer within 10 s: " << r.status().message();
    return r.ok() ? *r : HttpReply{};
  };
  // An alias bomb in a step's payload.
  std::ofstream(dir->File("bomb.yaml")) << "saga: bomb\nsteps:\n  - name: s\n"
                                           "    action: http://127.0.0.1:9/a\n    payload:\n"
                                        << AliasBomb("      ");
  HttpReply bomb = reload();
  EXPECT_EQ(bomb.status, 400) << bomb.body;
  EXPECT_NE(bomb.body.find("bomb.yaml:"), std::string::npos) << bomb.body;
  EXPECT_NE(bomb.body.find("expands to more than"), std::string::npos) << bomb.body;
  std::filesystem::remove(dir->File("bomb.yaml"));
  // A definition far larger than any request may be.
  {
    std::ofstream big(dir->File("big.yaml"));
    big << "saga: big\nsteps:\n  - name: s\n    action: http://127.0.0.1:9/a\n"
           "    payload: { blob: \""
        << std::string(3 << 20, 'x') << "\" }\n";
  }
  HttpReply big = reload();
  EXPECT_EQ(big.status, 400) << big.body.substr(0, 300);
  EXPECT_NE(big.body.find("big.yaml: the file is larger than"), std::string::npos)
      << big.body.substr(0, 300);
  // The definitions loaded before are still there, and still start.
  HttpReply list = Call(t, "GET", "/v1/sagas");
  EXPECT_NE(list.body.find("place-order"), std::string::npos) << list.body;
  EXPECT_EQ(list.body.find("\"big\""), std::string::npos) << list.body;
  // And treatyd stops when told, within its shutdown wait.
  auto stopped = t.process().Stop(std::chrono::seconds(30));
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(*stopped, 0) << "treatyd had to be killed";
}

TEST(HostileFilesTest, AConfigFileThatExplodesIsRefusedNamingItsLine) {
  auto dir = TempDir::Create("hostile-config");
  ASSERT_TRUE(dir.ok());
  std::ofstream(dir->File("treaty.yaml")) << "listen: 127.0.0.1:0\nx-anchors:\n" << AliasBomb("  ");
  auto p =
      Process::Start(ProcessSpec{.name = "check-config",
                                 .argv = {kTreatydPath, "--check-config", dir->File("treaty.yaml")},
                                 .log_path = dir->File("check.log")});
  ASSERT_TRUE(p.ok());
  auto code = (*p)->Wait(std::chrono::seconds(20));
  ASSERT_TRUE(code.ok()) << "--check-config did not finish in 20 s";
  EXPECT_EQ(*code, 2);
  const std::string log = (*p)->ReadLog();
  EXPECT_NE(log.find("treaty.yaml:"), std::string::npos) << log;
  EXPECT_NE(log.find("expands to more than"), std::string::npos) << log;
}

}  // namespace
}  // namespace treaty::harness
