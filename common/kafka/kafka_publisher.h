#pragma once

// Publishes batches to Kafka with librdkafka's idempotent producer and reports, per message,
// whether the broker acknowledged it. librdkafka's types and errors stop here.

#include <memory>
#include <string>
#include <vector>

#include "common/duration.h"
#include "common/kafka/publisher.h"
#include "common/status.h"

namespace treaty::kafka {

class KafkaPublisher : public Publisher {
 public:
  // Connects lazily, on the first Publish (a bad setting then fails every message of it).
  static Result<std::unique_ptr<KafkaPublisher>> Create(const std::string& bootstrap_servers,
                                                        Duration delivery_timeout);
  ~KafkaPublisher() override;

  // As Publisher::Publish; waits at most the delivery timeout plus a margin.
  std::vector<Delivery> Publish(const std::vector<OutgoingMessage>& messages) override;

 private:
  class Impl;
  explicit KafkaPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace treaty::kafka
