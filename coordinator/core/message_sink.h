#pragma once

// Where the core delivers messages of transactional-message transactions (Kafka, through an
// adapter). Thread-safe.

#include <map>
#include <string>
#include <vector>

namespace treaty::core {

struct OutboundMessage {
  std::string topic;
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
};

struct MessageResult {
  bool acked = false;
  std::string error;
};

class MessageSink {
 public:
  virtual ~MessageSink() = default;
  // Delivers every message in order and reports, per message, whether the broker acknowledged
  // it. Never throws.
  virtual std::vector<MessageResult> Deliver(const std::vector<OutboundMessage>& messages) = 0;
};

}  // namespace treaty::core
