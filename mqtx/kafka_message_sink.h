#pragma once

// core::MessageSink over Kafka (common/kafka: in treatyd, librdkafka's idempotent producer).

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/batcher.h"
#include "common/kafka/publisher.h"
#include "coordinator/core/message_sink.h"

namespace treaty::broker {

// Concurrent deliveries (of different transactions) share one publish: the producer waits for a
// publish's acknowledgements as a whole, so one publish at a time, each of everything queued
// meanwhile (up to kMaxBatch deliveries), instead of one per transaction in turn. A delivery's
// messages stay together and in order; a message that fails at produce time holds back the
// later messages with its key of its own delivery only.
class KafkaMessageSink : public core::MessageSink {
 public:
  explicit KafkaMessageSink(std::unique_ptr<kafka::Publisher> publisher)
      : publisher_(std::move(publisher)),
        batcher_([this](const std::vector<const Delivery*>& batch) { return Publish(batch); },
                 kMaxBatch, /*max_in_flight=*/1) {}

  std::vector<core::MessageResult> Deliver(
      const std::vector<core::OutboundMessage>& messages) override {
    if (messages.empty()) return {};
    return batcher_.Submit(std::to_string(next_key_++), Delivery{&messages});
  }

 private:
  static constexpr size_t kMaxBatch = 64;

  struct Delivery {
    const std::vector<core::OutboundMessage>* messages = nullptr;  // the caller's, who waits
  };

  std::vector<std::vector<core::MessageResult>> Publish(const std::vector<const Delivery*>& batch) {
    std::vector<kafka::OutgoingMessage> out;
    int group = 0;
    for (const Delivery* d : batch) {
      for (const auto& m : *d->messages) out.push_back({m.topic, m.key, m.value, m.headers, group});
      ++group;
    }
    std::vector<kafka::Delivery> acks;
    std::string failure = "no answer";
    try {
      acks = publisher_->Publish(out);
    } catch (const std::exception& e) {
      // The batcher's run must not throw (its callers would wait forever); each message of the
      // batch fails instead, and is retried with its transaction.
      failure = e.what();
    }
    std::vector<std::vector<core::MessageResult>> replies;
    replies.reserve(batch.size());
    size_t i = 0;
    for (const Delivery* d : batch) {
      std::vector<core::MessageResult>& reply = replies.emplace_back();
      for (size_t k = 0; k < d->messages->size(); ++k, ++i) {
        reply.push_back(i < acks.size() ? core::MessageResult{acks[i].acked, acks[i].error}
                                        : core::MessageResult{false, failure});
      }
    }
    return replies;
  }

  std::unique_ptr<kafka::Publisher> publisher_;
  std::atomic<uint64_t> next_key_{0};  // every delivery its own key: none is held back by another
  Batcher<Delivery, std::vector<core::MessageResult>> batcher_;
};

}  // namespace treaty::broker
