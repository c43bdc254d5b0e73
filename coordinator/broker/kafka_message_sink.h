#pragma once

// core::MessageSink over Kafka (common/kafka's idempotent publisher).

#include <memory>
#include <mutex>

#include "common/kafka/kafka_publisher.h"
#include "coordinator/core/message_sink.h"

namespace treaty::broker {

class KafkaMessageSink : public core::MessageSink {
 public:
  explicit KafkaMessageSink(std::unique_ptr<kafka::KafkaPublisher> publisher)
      : publisher_(std::move(publisher)) {}

  std::vector<core::MessageResult> Deliver(
      const std::vector<core::OutboundMessage>& messages) override {
    std::vector<kafka::OutgoingMessage> out;
    for (const auto& m : messages) out.push_back({m.topic, m.key, m.value, m.headers});
    std::vector<kafka::Delivery> d;
    {
      // One batch at a time: a batch's acknowledgements are waited for as a whole.
      std::lock_guard<std::mutex> lock(mu_);
      d = publisher_->Publish(out);
    }
    std::vector<core::MessageResult> results;
    for (const auto& r : d) results.push_back({r.acked, r.error});
    return results;
  }

 private:
  std::mutex mu_;
  std::unique_ptr<kafka::KafkaPublisher> publisher_;
};

}  // namespace treaty::broker
