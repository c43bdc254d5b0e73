// treaty-kafka-probe: a plain librdkafka client for tests and the demo, so that what reaches a
// topic is checked by a separate process talking to the broker like any consumer would.
//
//   treaty-kafka-probe produce --bootstrap B --topic T [--key K] --value V [--count N]
//                             [--timeout-ms MS]
//       produces N messages (value-0, value-1, ... when N > 1), waits for every ack, exits 1 if
//       any was not acknowledged within MS (message.timeout.ms, default 30000).
//   treaty-kafka-probe consume --bootstrap B --topic T --count N [--timeout-ms MS]
//                             [--settle-ms MS]
//       reads from the beginning with a fresh consumer group, prints "key<TAB>value" per message
//       and exits 0 once N were read, 1 on timeout. With --settle-ms it then keeps reading that
//       long and exits 1 if any message beyond N arrives (to show there are no duplicates);
//       with --allow-extra 1 it prints them and exits 0 (at-least-once delivery). With
//       --headers 1 each line ends with a tab and "name=value;" per header (extras too). With
//       --to-end 1, after N it reads on until every partition is read up to its high watermark
//       (all the topic holds, however many duplicates).

#include <librdkafka/rdkafkacpp.h>

#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>

namespace {

int Usage() {
  std::cerr << "usage: treaty-kafka-probe produce --bootstrap B --topic T [--key K] --value V "
               "[--count N]\n"
               "       treaty-kafka-probe consume --bootstrap B --topic T --count N "
               "[--timeout-ms MS]\n";
  return 2;
}

bool Set(RdKafka::Conf* conf, const std::string& k, const std::string& v) {
  std::string err;
  if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) {
    std::cerr << "treaty-kafka-probe: " << k << ": " << err << "\n";
    return false;
  }
  return true;
}

class DeliveryReport : public RdKafka::DeliveryReportCb {
 public:
  void dr_cb(RdKafka::Message& m) override {
    if (m.err() != RdKafka::ERR_NO_ERROR) {
      ++failed;
      std::cerr << "treaty-kafka-probe: delivery failed: " << m.errstr() << "\n";
    }
  }
  int failed = 0;
};

int Produce(std::map<std::string, std::string>& opt) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  DeliveryReport report;
  std::string err;
  std::string timeout = opt.count("timeout-ms") ? opt["timeout-ms"] : "30000";
  if (!Set(conf.get(), "bootstrap.servers", opt["bootstrap"]) ||
      !Set(conf.get(), "enable.idempotence", "true") ||
      !Set(conf.get(), "message.timeout.ms", timeout) ||
      conf->set("dr_cb", &report, err) != RdKafka::Conf::CONF_OK) {
    return 1;
  }
  std::unique_ptr<RdKafka::Producer> p(RdKafka::Producer::create(conf.get(), err));
  if (!p) {
    std::cerr << "treaty-kafka-probe: " << err << "\n";
    return 1;
  }
  int count = opt.count("count") ? std::stoi(opt["count"]) : 1;
  for (int i = 0; i < count; ++i) {
    std::string value = count == 1 ? opt["value"] : opt["value"] + "-" + std::to_string(i);
    const std::string& key = opt["key"];
    RdKafka::ErrorCode e;
    while ((e = p->produce(opt["topic"], RdKafka::Topic::PARTITION_UA,
                           RdKafka::Producer::RK_MSG_COPY, value.data(), value.size(),
                           key.empty() ? nullptr : key.data(), key.size(), 0, nullptr)) ==
           RdKafka::ERR__QUEUE_FULL) {
      p->poll(100);
    }
    if (e != RdKafka::ERR_NO_ERROR) {
      std::cerr << "treaty-kafka-probe: produce: " << RdKafka::err2str(e) << "\n";
      return 1;
    }
  }
  p->flush(std::stoi(timeout) + 5000);
  if (p->outq_len() != 0 || report.failed != 0) {
    std::cerr << "treaty-kafka-probe: not every message was acknowledged\n";
    return 1;
  }
  return 0;
}

int Consume(std::map<std::string, std::string>& opt) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  // A fresh group each run: re-joining an old group id on the dev broker waits out the session.
  std::random_device rd;
  std::string group = "treaty-probe-" + std::to_string(rd()) + std::to_string(rd());
  if (!Set(conf.get(), "bootstrap.servers", opt["bootstrap"]) ||
      !Set(conf.get(), "group.id", group) || !Set(conf.get(), "auto.offset.reset", "earliest") ||
      !Set(conf.get(), "enable.auto.commit", "false")) {
    return 1;
  }
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> c(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!c) {
    std::cerr << "treaty-kafka-probe: " << err << "\n";
    return 1;
  }
  if (RdKafka::ErrorCode e = c->subscribe({opt["topic"]}); e != RdKafka::ERR_NO_ERROR) {
    std::cerr << "treaty-kafka-probe: subscribe: " << RdKafka::err2str(e) << "\n";
    return 1;
  }
  const bool headers = opt.count("headers") > 0;
  auto print = [&](RdKafka::Message& m) {
    std::string key = m.key() ? *m.key() : "";
    std::cout << key << "\t" << std::string(static_cast<const char*>(m.payload()), m.len());
    if (headers && m.headers()) {
      std::cout << "\t";
      for (const auto& h : m.headers()->get_all()) {
        std::cout << h.key() << "="
                  << std::string(static_cast<const char*>(h.value()), h.value_size()) << ";";
      }
    }
    std::cout << std::endl;
  };
  int want = std::stoi(opt["count"]);
  int timeout_ms = opt.count("timeout-ms") ? std::stoi(opt["timeout-ms"]) : 20'000;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int got = 0;
  while (got < want && std::chrono::steady_clock::now() < deadline) {
    std::unique_ptr<RdKafka::Message> m(c->consume(200));
    if (m->err() == RdKafka::ERR_NO_ERROR) {
      print(*m);
      ++got;
    } else if (m->err() != RdKafka::ERR__TIMED_OUT && m->err() != RdKafka::ERR__PARTITION_EOF) {
      std::cerr << "treaty-kafka-probe: consume: " << m->errstr() << "\n";
    }
  }
  int extra = 0;
  if (got >= want && opt.count("to-end")) {
    // On until every assigned partition is read up to its high watermark, asked of the broker:
    // everything the topic holds now, duplicates included, however many there are.
    bool at_end = false;
    while (!at_end && std::chrono::steady_clock::now() < deadline) {
      std::vector<RdKafka::TopicPartition*> parts;
      at_end = c->assignment(parts) == RdKafka::ERR_NO_ERROR && !parts.empty() &&
               c->position(parts) == RdKafka::ERR_NO_ERROR;
      for (RdKafka::TopicPartition* p : parts) {
        int64_t low = 0, high = 0;
        if (c->query_watermark_offsets(p->topic(), p->partition(), &low, &high, 5000) !=
                RdKafka::ERR_NO_ERROR ||
            (high > low && p->offset() < high)) {
          at_end = false;
        }
      }
      RdKafka::TopicPartition::destroy(parts);
      while (!at_end) {
        std::unique_ptr<RdKafka::Message> m(c->consume(100));
        if (m->err() != RdKafka::ERR_NO_ERROR) break;
        print(*m);
        ++extra;
      }
    }
    if (!at_end) {
      std::cerr << "treaty-kafka-probe: not at the end of the topic in time\n";
      return 1;
    }
  }
  int settle_ms = opt.count("settle-ms") ? std::stoi(opt["settle-ms"]) : 0;
  auto settle_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(settle_ms);
  while (got >= want && std::chrono::steady_clock::now() < settle_end) {
    std::unique_ptr<RdKafka::Message> m(c->consume(100));
    if (m->err() == RdKafka::ERR_NO_ERROR) {
      print(*m);
      ++extra;
    }
  }
  c->close();
  if (extra > 0 && !opt.count("allow-extra")) {
    std::cerr << "treaty-kafka-probe: " << extra << " messages beyond the " << want
              << " expected\n";
    return 1;
  }
  if (got < want) {
    std::cerr << "treaty-kafka-probe: read " << got << " of " << want << " messages\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string verb = argv[1];
  std::map<std::string, std::string> opt;
  for (int i = 2; i < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) return Usage();
    opt[k.substr(2)] = argv[i + 1];
  }
  if (!opt.count("bootstrap") || !opt.count("topic")) return Usage();
  try {
    if (verb == "produce" && opt.count("value")) return Produce(opt);
    if (verb == "consume" && opt.count("count")) return Consume(opt);
  } catch (const std::exception& e) {  // std::stoi on a bad number
    std::cerr << "treaty-kafka-probe: " << e.what() << "\n";
    return 2;
  }
  return Usage();
}
