#pragma once

// What Treaty's Kafka adapters need of a producer: publish a batch, learn per message whether
// the broker took it. KafkaPublisher (librdkafka) is the implementation; tests of the adapters
// above it use their own.

#include <map>
#include <string>
#include <vector>

namespace treaty::kafka {

struct OutgoingMessage {
  std::string topic;
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
  // A message that fails holds back the later messages with its topic and key in its group
  // (they would overtake it otherwise); messages of other groups go on.
  int group = 0;
  // When set, what "would overtake it" means instead of topic and key: a failed message holds
  // back the later ones of its group with the same `ordering`, whatever their topic and key
  // (the relay's aggregate, whose events may go to several topics).
  std::string ordering;
};

struct Delivery {
  bool acked = false;
  bool permanent = false;  // the broker will never take it (e.g. too large)
  std::string error;
};

class Publisher {
 public:
  virtual ~Publisher() = default;

  // Produces every message in order and waits until each is acked or failed; one Delivery per
  // message, in order. Messages with one key go to one partition, in order. Calls must not
  // overlap (one publish at a time per publisher).
  virtual std::vector<Delivery> Publish(const std::vector<OutgoingMessage>& messages) = 0;
};

}  // namespace treaty::kafka
