#include "common/kafka/kafka_log.h"

#include <string>

#include "common/log.h"

namespace treaty::kafka {
namespace {

class LogBridge : public RdKafka::EventCb {
 public:
  void event_cb(RdKafka::Event& e) override {
    static const Logger log("kafka");
    switch (e.type()) {
      case RdKafka::Event::EVENT_LOG: {
        int sev = e.severity();
        LogLevel level = sev <= RdKafka::Event::EVENT_SEVERITY_ERROR     ? LogLevel::kError
                         : sev <= RdKafka::Event::EVENT_SEVERITY_WARNING ? LogLevel::kWarn
                         : sev <= RdKafka::Event::EVENT_SEVERITY_INFO    ? LogLevel::kInfo
                                                                         : LogLevel::kDebug;
        log.Log(level, e.str(), {{"facility", e.fac()}});
        break;
      }
      case RdKafka::Event::EVENT_ERROR:
        log.Warn(e.str(), {{"error", RdKafka::err2str(e.err())}});
        break;
      default:
        break;
    }
  }
};

}  // namespace

void RouteLogsToTreaty(RdKafka::Conf* conf) {
  static LogBridge bridge;
  std::string err;
  conf->set("event_cb", static_cast<RdKafka::EventCb*>(&bridge), err);
}

}  // namespace treaty::kafka
