#include "coordinator/transport/http_branch_transport.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerConnection.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <gtest/gtest.h>

#include <chrono>
#include <climits>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <string>

namespace treaty::transport {
namespace {

using namespace std::chrono_literals;

// A participant on loopback, counting the connections it accepted and those still open. It
// answers every call at once, except calls to /hold: those wait until HoldUntil()'s number of
// them have arrived, or Release(), or 10 s.
class LoopbackParticipant {
 public:
  // `keep_alive`: how long the server keeps an idle connection before closing it.
  explicit LoopbackParticipant(std::chrono::milliseconds keep_alive = 60s)
      : socket_(Poco::Net::SocketAddress("127.0.0.1", 0)) {
    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(Poco::Timespan(keep_alive.count() * 1000));
    params->setMaxKeepAliveRequests(0);  // no limit
    server_ =
        std::make_unique<Poco::Net::TCPServer>(new Connections(this, params), socket_, params);
    server_->start();
  }
  ~LoopbackParticipant() {
    Release();
    server_->stop();
    // Stopped, the server deletes its connections as their clients go; the transports of the
    // tests are gone by now.
    MutexLock lock(mu_);
    cv_.wait_for(lock.native(), 10s, [&]() REQUIRES(mu_) { return open_ == 0; });
  }

  std::string url(const std::string& path = "/2pc/prepare") const {
    return "http://127.0.0.1:" + std::to_string(socket_.address().port()) + path;
  }
  int accepted() {
    MutexLock lock(mu_);
    return accepted_;
  }

  // Whether the server has seen its connections close down to `n` open, within 10 s (it sees a
  // client's close on its own thread, a moment after the close).
  bool OpenConnectionsFallTo(int n) {
    MutexLock lock(mu_);
    return cv_.wait_for(lock.native(), 10s, [&]() REQUIRES(mu_) { return open_ <= n; });
  }

  void HoldUntil(int arrivals) {
    MutexLock lock(mu_);
    release_at_ = arrivals;
  }
  void Release() {
    MutexLock lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  // Poco's HTTP connection, counted in and out.
  class Connection : public Poco::Net::HTTPServerConnection {
   public:
    Connection(const Poco::Net::StreamSocket& socket, Poco::Net::HTTPServerParams::Ptr params,
               Poco::Net::HTTPRequestHandlerFactory::Ptr handlers, LoopbackParticipant* owner)
        : HTTPServerConnection(socket, params, handlers), owner_(owner) {
      MutexLock lock(owner_->mu_);
      ++owner_->accepted_;
      ++owner_->open_;
    }
    ~Connection() override {
      MutexLock lock(owner_->mu_);
      --owner_->open_;
      owner_->cv_.notify_all();
    }

   private:
    LoopbackParticipant* owner_;
  };
  class Answer : public Poco::Net::HTTPRequestHandler {
   public:
    explicit Answer(LoopbackParticipant* owner) : owner_(owner) {}
    void handleRequest(Poco::Net::HTTPServerRequest& req,
                       Poco::Net::HTTPServerResponse& resp) override {
      req.stream().ignore(std::numeric_limits<std::streamsize>::max());
      if (req.getURI() == "/hold") {
        MutexLock lock(owner_->mu_);
        ++owner_->arrivals_;
        owner_->cv_.notify_all();
        owner_->cv_.wait_for(lock.native(), 10s, [&]() REQUIRES(owner_->mu_) {
          return owner_->released_ || owner_->arrivals_ >= owner_->release_at_;
        });
      }
      resp.setContentType("application/json");
      resp.sendBuffer("{}", 2);
    }

   private:
    LoopbackParticipant* owner_;
  };
  class Answers : public Poco::Net::HTTPRequestHandlerFactory {
   public:
    explicit Answers(LoopbackParticipant* owner) : owner_(owner) {}
    Poco::Net::HTTPRequestHandler* createRequestHandler(
        const Poco::Net::HTTPServerRequest&) override {
      return new Answer(owner_);
    }

   private:
    LoopbackParticipant* owner_;
  };
  class Connections : public Poco::Net::TCPServerConnectionFactory {
   public:
    Connections(LoopbackParticipant* owner, Poco::Net::HTTPServerParams::Ptr params)
        : owner_(owner), params_(params), answers_(new Answers(owner)) {}
    Poco::Net::TCPServerConnection* createConnection(
        const Poco::Net::StreamSocket& socket) override {
      return new Connection(socket, params_, answers_, owner_);
    }

   private:
    LoopbackParticipant* owner_;
    Poco::Net::HTTPServerParams::Ptr params_;
    Poco::Net::HTTPRequestHandlerFactory::Ptr answers_;
  };

  Mutex mu_;
  std::condition_variable cv_;  // any change below
  int accepted_ GUARDED_BY(mu_) = 0;
  int open_ GUARDED_BY(mu_) = 0;
  int arrivals_ GUARDED_BY(mu_) = 0;  // calls to /hold so far
  int release_at_ GUARDED_BY(mu_) = INT_MAX;
  bool released_ GUARDED_BY(mu_) = false;
  Poco::Net::ServerSocket socket_;
  std::unique_ptr<Poco::Net::TCPServer> server_;
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
  core::BranchReply patient = transport.Call(CallTo(participant, "/2pc/prepare", 30s));
  EXPECT_EQ(patient.outcome, core::BranchReply::Outcome::kDone) << patient.detail;
  // Held until released: with the first call's 30 s still on the socket, it would be answered
  // (after the participant's own 10 s) and counted done.
  core::BranchReply hasty = transport.Call(CallTo(participant, "/hold", 100ms));
  EXPECT_EQ(hasty.outcome, core::BranchReply::Outcome::kUnknown) << hasty.detail;
}

// A participant that closes idle connections sooner than Treaty stops reusing them: the call
// that meets a closed one is made again at once, on a new connection, not on another pooled
// connection the participant closed too.
TEST(HttpBranchTransportTest, ACallMeetingClosedPooledConnectionsIsMadeOnANewOne) {
  LoopbackParticipant participant(/*keep_alive=*/100ms);
  HttpBranchTransport transport(4, /*call_threads=*/1, {}, /*idle_limit=*/60s);
  // Two calls at once, each answered only when both have arrived: two pooled connections.
  participant.HoldUntil(2);
  auto both = transport.CallAll({CallTo(participant, "/hold"), CallTo(participant, "/hold")});
  for (const auto& r : both) ASSERT_EQ(r.outcome, core::BranchReply::Outcome::kDone) << r.detail;
  ASSERT_EQ(participant.accepted(), 2);
  ASSERT_TRUE(participant.OpenConnectionsFallTo(0));  // the participant closed both, idle
  core::BranchReply reply = transport.Call(CallTo(participant));
  EXPECT_EQ(reply.outcome, core::BranchReply::Outcome::kDone) << reply.detail;
  EXPECT_EQ(participant.accepted(), 3);
}

// A call's timeout is its whole budget from when it was asked for: one that waited for a free
// call thread as long as that is not sent at all (the driver sized the budget to fit in its
// lease, so a late call could reach a participant after another coordinator took over).
TEST(HttpBranchTransportTest, ACallThatWaitedItsWholeBudgetForAThreadIsNotSent) {
  LoopbackParticipant participant;
  HttpBranchTransport transport(4, /*call_threads=*/1, {}, 60s);
  // The caller's thread takes the first call, the one pool thread the second; the third waits
  // for that thread, which is free only once the second timed out.
  auto replies =
      transport.CallAll({CallTo(participant, "/hold", 300ms), CallTo(participant, "/hold", 300ms),
                         CallTo(participant, "/hold", 300ms)});
  participant.Release();
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[2].outcome, core::BranchReply::Outcome::kUnknown);
  EXPECT_NE(replies[2].detail.find("not started"), std::string::npos) << replies[2].detail;
  EXPECT_EQ(participant.accepted(), 2) << "the third call reached the participant";
}

}  // namespace
}  // namespace treaty::transport
