#include "outbox/event_consumer.h"

#include <Poco/JSON/Parser.h>
#include <librdkafka/rdkafkacpp.h>

#include "common/kafka/kafka_log.h"
#include "common/protocol/protocol.h"
#include "outbox/outbox.h"

namespace treaty::participant {

EventConsumer::EventConsumer(std::string bootstrap_servers, std::string topic, std::string group,
                             pg::PgPool& pool, EventHandler handler, const Logger& log)
    : bootstrap_(std::move(bootstrap_servers)),
      topic_(std::move(topic)),
      group_(std::move(group)),
      pool_(pool),
      handler_(std::move(handler)),
      log_(log) {
  thread_ = std::thread([this] { Run(); });
}

EventConsumer::~EventConsumer() {
  stop_ = true;
  thread_.join();
}

void EventConsumer::Run() {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::string err;
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"bootstrap.servers", bootstrap_},
           {"group.id", group_},
           {"auto.offset.reset", "earliest"},
           {"enable.auto.commit", "false"},
           // After a broker outage the group is re-joined; Kafka's 45s default would stall
           // consumption that long.
           {"session.timeout.ms", "10000"},
           {"heartbeat.interval.ms", "3000"}}) {
    conf->set(k, v, err);
  }
  kafka::RouteLogsToTreaty(conf.get());
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) {
    log_.Error("cannot create the Kafka consumer", {{"error", err}});
    return;
  }
  consumer->subscribe({topic_});
  log_.Info("consuming events", {{"topic", topic_}, {"group", group_}});
  while (!stop_) {
    std::unique_ptr<RdKafka::Message> m(consumer->consume(200));
    if (m->err() != RdKafka::ERR_NO_ERROR) continue;
    std::string event_id, event_type, traceparent;
    if (const RdKafka::Headers* h = m->headers()) {
      for (const auto& header : h->get_all()) {
        std::string value(static_cast<const char*>(header.value()), header.value_size());
        if (header.key() == protocol::kEventIdHeader) event_id = value;
        if (header.key() == protocol::kEventTypeHeader) event_type = value;
        if (header.key() == protocol::kTraceparentHeader) {
          traceparent = protocol::ValidTraceParent(value);
        }
      }
    }
    if (event_id.empty()) {  // not from an outbox: the position identifies it
      event_id = m->topic_name() + "/" + std::to_string(m->partition()) + "/" +
                 std::to_string(m->offset());
    }
    std::string value(static_cast<const char*>(m->payload()), m->len());
    // Apply with the inbox until it sticks; the offset moves on only afterwards.
    bool applied = false;
    while (!stop_) {
      auto outcome = pool_.Run<bool>([&](pqxx::connection& c) -> Result<bool> {
        pqxx::work tx(c);
        // The event's trace context: kept in its inbox row, readable by the handler
        // (current_setting('treaty.traceparent', true)) and carried on by the outbox rows it
        // writes.
        Outbox::SetTraceContext(tx, traceparent);
        if (!Inbox::Claim(tx, event_id, topic_)) return false;  // applied before
        Poco::JSON::Parser parser;
        Poco::JSON::Object::Ptr payload;
        try {
          payload = parser.parse(value).extract<Poco::JSON::Object::Ptr>();
        } catch (const std::exception&) {
          payload = new Poco::JSON::Object();
        }
        Status s = handler_(tx, event_type, *payload);
        if (!s.ok()) return s;
        tx.commit();
        return true;
      });
      if (outcome.ok()) {
        applied = true;
        if (*outcome) {
          log_.Info("event applied", {{"event_id", event_id},
                                      {"event_type", event_type},
                                      {"trace_id", protocol::TraceIdOf(traceparent)}});
        }
        break;
      }
      log_.Warn("event not applied yet; retrying",
                {{"event_id", event_id}, {"error", outcome.status().message()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    // Stopped before it was applied: its offset stays where it was, so that the next consumer
    // of the group (this service restarted) gets the message again. Committing it here would
    // skip the message for good.
    if (!applied) break;
    consumer->commitSync(m.get());
  }
  consumer->close();
}

}  // namespace treaty::participant
