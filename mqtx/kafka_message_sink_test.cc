#include "mqtx/kafka_message_sink.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace treaty::broker {
namespace {

// A publisher whose answer depends on the message: a value starting with "fail" is refused with
// an error naming it. Values are "<delivery>/<n>": each publish is checked to give one group to
// each delivery's messages, and different groups to different deliveries. While `hold` is set,
// a publish waits for Release() (so that deliveries queue up behind it).
class ScriptedPublisher : public kafka::Publisher {
 public:
  std::vector<kafka::Delivery> Publish(
      const std::vector<kafka::OutgoingMessage>& messages) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++publishes_;
    entered_cv_.notify_all();
    released_cv_.wait(lock, [this] { return !hold_; });
    std::map<std::string, int> group_of;  // delivery -> its group in this publish
    std::map<int, std::string> delivery_of;
    for (const auto& m : messages) {
      std::string delivery = m.value.substr(0, m.value.find('/'));
      auto [g, new_delivery] = group_of.emplace(delivery, m.group);
      auto [d, new_group] = delivery_of.emplace(m.group, delivery);
      if (g->second != m.group || d->second != delivery) ++group_mixups_;
    }
    if (group_of.size() > 1) ++shared_publishes_;
    if (throw_) throw std::runtime_error("the producer is gone");
    std::vector<kafka::Delivery> out;
    for (const auto& m : messages) {
      bool refused = m.value.find("/fail") != std::string::npos;
      out.push_back({!refused, false, refused ? "refused " + m.value : ""});
    }
    return out;
  }

  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = true;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    released_cv_.notify_all();
  }
  // Whether `n` publishes have begun within 30 s.
  bool WaitForPublishes(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return entered_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return publishes_ >= n; });
  }
  void ThrowFromNowOn() {
    std::lock_guard<std::mutex> lock(mu_);
    throw_ = true;
  }
  int publishes() {
    std::lock_guard<std::mutex> lock(mu_);
    return publishes_;
  }
  int shared_publishes() {
    std::lock_guard<std::mutex> lock(mu_);
    return shared_publishes_;
  }
  int group_mixups() {
    std::lock_guard<std::mutex> lock(mu_);
    return group_mixups_;
  }

 private:
  std::mutex mu_;
  std::condition_variable entered_cv_;
  std::condition_variable released_cv_;
  bool hold_ = false;
  bool throw_ = false;
  int publishes_ = 0;
  int shared_publishes_ = 0;
  int group_mixups_ = 0;
};

std::vector<core::OutboundMessage> MessagesOf(const std::string& delivery,
                                              const std::vector<std::string>& names) {
  std::vector<core::OutboundMessage> out;
  for (const auto& n : names) out.push_back({"orders", "order-1", delivery + "/" + n, {}});
  return out;
}

// What a delivery's caller must get back: one result per message, in order, its own.
void ExpectOwnResults(const std::vector<core::OutboundMessage>& sent,
                      const std::vector<core::MessageResult>& got) {
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    bool refused = sent[i].value.find("/fail") != std::string::npos;
    EXPECT_EQ(got[i].acked, !refused) << sent[i].value;
    EXPECT_EQ(got[i].error, refused ? "refused " + sent[i].value : "") << sent[i].value;
  }
}

TEST(KafkaMessageSinkTest, ADeliveryAloneGetsItsResultsInOrder) {
  auto publisher = std::make_unique<ScriptedPublisher>();
  KafkaMessageSink sink(std::move(publisher));
  auto messages = MessagesOf("d0", {"a", "fail-b", "c"});
  ExpectOwnResults(messages, sink.Deliver(messages));
  EXPECT_TRUE(sink.Deliver({}).empty());
}

// Deliveries that queue while a publish runs share the next one: each keeps its own group, and
// each caller gets its own messages' results, refusals included, not a neighbour's.
TEST(KafkaMessageSinkTest, DeliveriesSharingAPublishGetTheirOwnResults) {
  auto owned = std::make_unique<ScriptedPublisher>();
  ScriptedPublisher* publisher = owned.get();
  KafkaMessageSink sink(std::move(owned));
  constexpr int kQueued = 4;
  // Whether the queued callers are all in the queue when the held publish ends is up to the
  // scheduler; rounds go on until one publish carried several deliveries.
  for (int round = 0; round < 100 && publisher->shared_publishes() == 0; ++round) {
    publisher->Hold();
    const int before = publisher->publishes();
    auto first = MessagesOf("r" + std::to_string(round) + "lead", {"a"});
    std::thread leader([&] { ExpectOwnResults(first, sink.Deliver(first)); });
    if (!publisher->WaitForPublishes(before + 1)) {  // the leader's publish runs, and waits
      publisher->Release();
      leader.join();
      FAIL() << "the leader's delivery never reached the publisher";
    }
    std::vector<std::vector<core::OutboundMessage>> queued;
    for (int q = 0; q < kQueued; ++q) {
      std::string d = "r" + std::to_string(round) + "q" + std::to_string(q);
      queued.push_back(q % 2 == 0 ? MessagesOf(d, {"a", "b"})
                                  : MessagesOf(d, {"a", "fail-b", "c"}));
    }
    std::atomic<int> started{0};
    std::vector<std::thread> callers;
    for (int q = 0; q < kQueued; ++q) {
      callers.emplace_back([&, q] {
        ++started;
        ExpectOwnResults(queued[q], sink.Deliver(queued[q]));
      });
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (started.load() < kQueued && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    publisher->Release();
    leader.join();
    for (auto& c : callers) c.join();
  }
  EXPECT_GT(publisher->shared_publishes(), 0) << "no publish ever carried two deliveries";
  EXPECT_EQ(publisher->group_mixups(), 0);
}

// A publish that throws (the producer's library failing in an unforeseen way) must not leave its
// callers waiting: each of its messages fails with the reason, to be retried with its transaction.
TEST(KafkaMessageSinkTest, APublishThatThrowsFailsEachMessageOfIt) {
  auto owned = std::make_unique<ScriptedPublisher>();
  ScriptedPublisher* publisher = owned.get();
  KafkaMessageSink sink(std::move(owned));
  publisher->ThrowFromNowOn();
  auto results = sink.Deliver(MessagesOf("d0", {"a", "b"}));
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_FALSE(r.acked);
    EXPECT_EQ(r.error, "the producer is gone");
  }
  // And the sink is still usable afterwards: the next delivery runs (and fails the same way).
  EXPECT_EQ(sink.Deliver(MessagesOf("d1", {"a"})).size(), 1u);
}

}  // namespace
}  // namespace treaty::broker
