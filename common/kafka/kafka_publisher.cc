#include "common/kafka/kafka_publisher.h"

#include <librdkafka/rdkafkacpp.h>

#include <set>

#include "common/kafka/kafka_log.h"

namespace treaty::kafka {

class KafkaPublisher::Impl : public RdKafka::DeliveryReportCb {
 public:
  Impl(std::string bootstrap, Duration timeout)
      : bootstrap_(std::move(bootstrap)), timeout_(timeout) {}

  Status Connect() {
    std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
    std::string err;
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
             {"bootstrap.servers", bootstrap_},
             {"enable.idempotence", "true"},
             {"message.timeout.ms", std::to_string(timeout_.count())},
             {"linger.ms", "5"}}) {
      if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) {
        return Status::InvalidArgument("kafka " + k + ": " + err);
      }
    }
    RouteLogsToTreaty(conf.get());
    if (conf->set("dr_cb", static_cast<RdKafka::DeliveryReportCb*>(this), err) !=
        RdKafka::Conf::CONF_OK) {
      return Status::Internal(err);
    }
    producer_.reset(RdKafka::Producer::create(conf.get(), err));
    if (!producer_) return Status::Unavailable("kafka producer: " + err);
    return Status::Ok();
  }

  void dr_cb(RdKafka::Message& m) override {
    auto* d = static_cast<Delivery*>(m.msg_opaque());
    if (d == nullptr) return;
    if (m.err() == RdKafka::ERR_NO_ERROR) {
      d->acked = true;
    } else {
      d->error = m.errstr();
      d->permanent = m.err() == RdKafka::ERR_MSG_SIZE_TOO_LARGE ||
                     m.err() == RdKafka::ERR_INVALID_MSG ||
                     m.err() == RdKafka::ERR_RECORD_LIST_TOO_LARGE;
    }
  }

  std::vector<Delivery> Publish(const std::vector<OutgoingMessage>& messages) {
    std::vector<Delivery> out(messages.size());
    if (!producer_) {
      if (Status s = Connect(); !s.ok()) {
        for (Delivery& d : out) d.error = s.message();
        return out;
      }
    }
    size_t produced = 0;
    std::set<std::string> failed_keys;  // an ordering whose message failed: its later ones wait
    for (size_t i = 0; i < messages.size(); ++i) {
      const OutgoingMessage& m = messages[i];
      std::string ordering = std::to_string(m.group) + '\0' +
                             (m.ordering.empty() ? m.topic + '\0' + m.key : '\1' + m.ordering);
      if (failed_keys.count(ordering)) {
        out[i].error = "held back: an earlier message with its key failed";
        continue;
      }
      RdKafka::Headers* headers = RdKafka::Headers::create();
      for (const auto& [k, v] : m.headers) headers->add(k, v);
      RdKafka::ErrorCode e;
      while (true) {
        e = producer_->produce(m.topic, RdKafka::Topic::PARTITION_UA,
                               RdKafka::Producer::RK_MSG_COPY, const_cast<char*>(m.value.data()),
                               m.value.size(), m.key.data(), m.key.size(), 0, headers, &out[i]);
        if (e != RdKafka::ERR__QUEUE_FULL) break;
        producer_->poll(50);
      }
      if (e != RdKafka::ERR_NO_ERROR) {
        delete headers;  // not taken over by a failed produce
        out[i].error = RdKafka::err2str(e);
        out[i].permanent = e == RdKafka::ERR_MSG_SIZE_TOO_LARGE;
        failed_keys.insert(ordering);  // later messages with this key must not overtake it
        continue;
      }
      produced = i + 1;
    }
    producer_->flush(static_cast<int>(timeout_.count()) + 5000);
    // Anything still queued has no answer yet: report it as failed, and start a new producer so
    // that a late delivery of it cannot be confused with the next batch's.
    bool stuck = producer_->outq_len() > 0;
    std::string fatal;
    bool is_fatal = producer_->fatal_error(fatal) != RdKafka::ERR_NO_ERROR;
    if (stuck || is_fatal) {
      producer_.reset();  // purges; reports for `out` arrive now or never
      for (size_t i = 0; i < produced; ++i) {
        if (!out[i].acked && out[i].error.empty()) {
          out[i].error = is_fatal ? "producer fatal error: " + fatal : "no acknowledgement in time";
        }
      }
    }
    return out;
  }

 private:
  const std::string bootstrap_;
  const Duration timeout_;
  std::unique_ptr<RdKafka::Producer> producer_;
};

KafkaPublisher::KafkaPublisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KafkaPublisher::~KafkaPublisher() = default;

Result<std::unique_ptr<KafkaPublisher>> KafkaPublisher::Create(const std::string& bootstrap,
                                                               Duration delivery_timeout) {
  // The producer itself is made on first use: nothing connects until a message is sent.
  auto impl = std::make_unique<Impl>(bootstrap, delivery_timeout);
  return std::unique_ptr<KafkaPublisher>(new KafkaPublisher(std::move(impl)));
}

std::vector<Delivery> KafkaPublisher::Publish(const std::vector<OutgoingMessage>& messages) {
  return impl_->Publish(messages);
}

}  // namespace treaty::kafka
