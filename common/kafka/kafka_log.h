#pragma once

// librdkafka's own log lines and error events, routed into Treaty's JSON-line logs (component
// "kafka") instead of librdkafka's plain stderr output. Set on every client's configuration.

#include <librdkafka/rdkafkacpp.h>

namespace treaty::kafka {

// Installs the bridge as `conf`'s event callback. The bridge is a process-wide singleton.
void RouteLogsToTreaty(RdKafka::Conf* conf);

}  // namespace treaty::kafka
