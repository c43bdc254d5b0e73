#include "coordinator/transport/http_branch_transport.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <memory>
#include <string>
#include <thread>

namespace treaty::transport {
namespace {

using namespace std::chrono_literals;

// A participant on loopback that answers every call at once, counting the connections it
// accepted and those still open.
class LoopbackParticipant {
 public:
  // `keep_alive`: how long the server keeps an idle connection before closing it.
  explicit LoopbackParticipant(std::chrono::milliseconds keep_alive = 60s)
      : socket_(Poco::Net::SocketAddress("127.0.0.1", 0)) {
    auto params = Poco::makeAuto<Poco::Net::HTTPServerParams>();
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(Poco::Timespan(keep_alive.count() * 1000));
    params->setMaxKeepAliveRequests(0);  // no limit
    server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory, socket_, params);
    server_->start();
  }
  ~LoopbackParticipant() { server_->stopAll(true); }

  // A call to /slow is answered after 300 ms.
  std::string url(const std::string& path = "/2pc/prepare") const {
    return "http://127.0.0.1:" + std::to_string(socket_.address().port()) + path;
  }
  int accepted() const { return server_->totalConnections(); }

  // Whether the server has seen its connections close down to `n` open, within 10 s (it notices
  // a client's close on its own thread, a moment after the close).
  bool OpenConnectionsFallTo(int n) const {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (server_->currentConnections() > n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

 private:
  class Ok : public Poco::Net::HTTPRequestHandler {
   public:
    void handleRequest(Poco::Net::HTTPServerRequest& req,
                       Poco::Net::HTTPServerResponse& resp) override {
      req.stream().ignore(std::numeric_limits<std::streamsize>::max());
      if (req.getURI() == "/slow") std::this_thread::sleep_for(300ms);
      resp.setContentType("application/json");
      resp.sendBuffer("{}", 2);
    }
  };
  class Factory : public Poco::Net::HTTPRequestHandlerFactory {
   public:
    Poco::Net::HTTPRequestHandler* createRequestHandler(
        const Poco::Net::HTTPServerRequest&) override {
      return new Ok;
    }
  };

  Poco::Net::ServerSocket socket_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

core::BranchCall CallTo(const LoopbackParticipant& p, const std::string& path = "/2pc/prepare",
                        Duration timeout = std::chrono::seconds(5)) {
  return core::BranchCall{.url = p.url(path),
                          .body = "{}",
                          .gid = "g1",
                          .branch_id = "b1",
                          .op = "prepare",
                          .timeout = timeout};
}

TEST(HttpBranchTransportTest, CallsToOneHostShareAKeptAliveConnection) {
  LoopbackParticipant participant;
  HttpBranchTransport transport(/*max_idle_per_host=*/4, /*call_threads=*/0, {},
                                /*idle_limit=*/60s);
  for (int i = 0; i < 3; ++i) {
    core::BranchReply reply = transport.Call(CallTo(participant));
    EXPECT_EQ(reply.outcome, core::BranchReply::Outcome::kDone) << reply.detail;
  }
  EXPECT_EQ(participant.accepted(), 1);
}

// A session idle for longer than the limit is closed, not reused: the next call connects anew
// and the server sees the old connection go.
TEST(HttpBranchTransportTest, ASessionIdleLongerThanTheLimitIsClosedNotReused) {
  LoopbackParticipant participant;
  HttpBranchTransport transport(4, 0, {}, /*idle_limit=*/0ms);
  EXPECT_EQ(transport.Call(CallTo(participant)).outcome, core::BranchReply::Outcome::kDone);
  EXPECT_EQ(transport.Call(CallTo(participant)).outcome, core::BranchReply::Outcome::kDone);
  EXPECT_EQ(participant.accepted(), 2);
  EXPECT_TRUE(participant.OpenConnectionsFallTo(1));  // only the second call's is still pooled
}

// A host that is no longer called does not keep its idle connections: a call to another host
// closes them once they have been idle for the limit.
TEST(HttpBranchTransportTest, IdleSessionsOfAHostNoLongerCalledAreClosed) {
  LoopbackParticipant gone;
  LoopbackParticipant other;
  HttpBranchTransport transport(4, 0, {}, /*idle_limit=*/0ms);
  EXPECT_EQ(transport.Call(CallTo(gone)).outcome, core::BranchReply::Outcome::kDone);
  EXPECT_EQ(transport.Call(CallTo(other)).outcome, core::BranchReply::Outcome::kDone);
  EXPECT_TRUE(gone.OpenConnectionsFallTo(0));
  EXPECT_EQ(other.accepted(), 1);
}

// Each call's own timeout applies, also on a kept-alive connection a call with another timeout
// used before.
TEST(HttpBranchTransportTest, EachCallsTimeoutAppliesOnAReusedConnection) {
  LoopbackParticipant participant;
  HttpBranchTransport transport(4, 0, {}, 60s);
  core::BranchReply patient = transport.Call(CallTo(participant, "/slow", std::chrono::seconds(5)));
  EXPECT_EQ(patient.outcome, core::BranchReply::Outcome::kDone) << patient.detail;
  core::BranchReply hasty =
      transport.Call(CallTo(participant, "/slow", std::chrono::milliseconds(100)));
  EXPECT_EQ(hasty.outcome, core::BranchReply::Outcome::kUnknown) << hasty.detail;
}

// A participant that closes idle connections sooner than Treaty stops reusing them: the call
// that meets a closed one is made again at once, on a new connection, not on another pooled
// connection the participant closed too.
TEST(HttpBranchTransportTest, ACallMeetingClosedPooledConnectionsIsMadeOnANewOne) {
  LoopbackParticipant participant(/*keep_alive=*/100ms);
  HttpBranchTransport transport(4, /*call_threads=*/1, {}, /*idle_limit=*/60s);
  // Two calls at once (the slow answer keeps both connections busy): two pooled connections.
  auto both = transport.CallAll({CallTo(participant, "/slow"), CallTo(participant, "/slow")});
  for (const auto& r : both) ASSERT_EQ(r.outcome, core::BranchReply::Outcome::kDone) << r.detail;
  ASSERT_EQ(participant.accepted(), 2);
  ASSERT_TRUE(participant.OpenConnectionsFallTo(0));  // the participant closed both, idle
  core::BranchReply reply = transport.Call(CallTo(participant));
  EXPECT_EQ(reply.outcome, core::BranchReply::Outcome::kDone) << reply.detail;
  EXPECT_EQ(participant.accepted(), 3);
}

}  // namespace
}  // namespace treaty::transport
