#pragma once

// Consumes a Kafka topic of outbox events for a service: each message is applied in one local
// transaction together with its event id in the inbox (treaty_inbox), so a redelivered message
// changes nothing; the offset is committed only after that transaction. At least once from
// Kafka, exactly once in effect. A fresh consumer group per service name.
//
// A message whose apply fails is tried again until it sticks; a stop meanwhile (or while an
// apply is in flight and then fails) leaves its offset uncommitted, so that the group's next
// consumer gets it again.

#include <Poco/JSON/Object.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "common/log.h"
#include "common/pg/pg_pool.h"

namespace treaty::participant {

// Applies one event inside `tx`; a non-OK status rolls it back and the message is tried again.
// `tx` has the message's trace context (its traceparent header) set: the handler reads it with
// current_setting('treaty.traceparent', true), and the outbox rows it writes carry it.
using EventHandler = std::function<Status(pqxx::work& tx, const std::string& event_type,
                                          const Poco::JSON::Object& payload)>;

class EventConsumer {
 public:
  EventConsumer(std::string bootstrap_servers, std::string topic, std::string group,
                pg::PgPool& pool, EventHandler handler, const Logger& log);
  ~EventConsumer();  // stops and joins

 private:
  void Run();

  const std::string bootstrap_, topic_, group_;
  pg::PgPool& pool_;
  EventHandler handler_;
  const Logger& log_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace treaty::participant
