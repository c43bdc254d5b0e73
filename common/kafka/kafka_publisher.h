#pragma once

// Publishes batches to Kafka with librdkafka's idempotent producer and reports, per message,
// whether the broker acknowledged it. librdkafka's types and errors stop here.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/duration.h"
#include "common/status.h"

namespace treaty::kafka {

struct OutgoingMessage {
  std::string topic;
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
  // A message that fails holds back the later messages with its topic and key in its group
  // (they would overtake it otherwise); messages of other groups go on.
  int group = 0;
};

struct Delivery {
  bool acked = false;
  bool permanent = false;  // the broker will never take it (e.g. too large)
  std::string error;
};

class KafkaPublisher {
 public:
  // Connects lazily, on the first Publish (a bad setting then fails every message of it).
  static Result<std::unique_ptr<KafkaPublisher>> Create(const std::string& bootstrap_servers,
                                                        Duration delivery_timeout);
  ~KafkaPublisher();

  // Produces every message in order and waits until each is acked or failed (at most the
  // delivery timeout plus a margin). Messages with one key go to one partition, in order.
  std::vector<Delivery> Publish(const std::vector<OutgoingMessage>& messages);

 private:
  class Impl;
  explicit KafkaPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace treaty::kafka
