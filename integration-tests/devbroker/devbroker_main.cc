// treaty-devbroker: the development Kafka broker. It hosts librdkafka's mock cluster
// (rdkafka_mock.h) in its own process, listening on loopback, so that the demo and the tests talk
// to it through bootstrap.servers exactly as they would to a real cluster. It is NOT a real
// Kafka: everything is in memory, and (librdkafka 2.0.2) read_committed consumers still see
// records of aborted transactions.
//
// Protocol, one line each way:
//   stdout, once at start:  "bootstrap <host:port,...>"
//   stdin, commands, each answered on stdout by "ok" or "error <why>":
//     down <broker-id> | up <broker-id>          take a broker off or back on the network
//     rtt <broker-id> <ms>                       add round-trip latency
//     request-errors <api-key> <err> [<err>...]  fail the next requests of that API (Kafka codes)
//     clear-errors <api-key>
//     topic-error <topic> <err>                  fail metadata for a topic
//     create-topic <topic> <partitions> <replication-factor>
// End of stdin stops only the command reader; SIGTERM or SIGINT stops the broker.

#include <dirent.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

std::mutex g_out_mu;

void Say(const std::string& line) {
  std::lock_guard<std::mutex> lock(g_out_mu);
  std::cout << line << std::endl;
}

std::string Run(rd_kafka_mock_cluster_t* mc, const std::string& line) {
  std::istringstream in(line);
  std::string cmd;
  in >> cmd;
  auto err_result = [](rd_kafka_resp_err_t e) {
    return e == RD_KAFKA_RESP_ERR_NO_ERROR ? std::string("ok")
                                           : std::string("error ") + rd_kafka_err2str(e);
  };
  if (cmd == "down" || cmd == "up") {
    int id;
    if (!(in >> id)) return "error usage: " + cmd + " <broker-id>";
    return err_result(cmd == "down" ? rd_kafka_mock_broker_set_down(mc, id)
                                    : rd_kafka_mock_broker_set_up(mc, id));
  }
  if (cmd == "rtt") {
    int id, ms;
    if (!(in >> id >> ms)) return "error usage: rtt <broker-id> <ms>";
    return err_result(rd_kafka_mock_broker_set_rtt(mc, id, ms));
  }
  if (cmd == "request-errors") {
    int api_key;
    std::vector<rd_kafka_resp_err_t> errs;
    if (!(in >> api_key)) return "error usage: request-errors <api-key> <err> [<err>...]";
    int e;
    while (in >> e) errs.push_back(static_cast<rd_kafka_resp_err_t>(e));
    if (errs.empty()) return "error usage: request-errors <api-key> <err> [<err>...]";
    rd_kafka_mock_push_request_errors_array(mc, static_cast<int16_t>(api_key), errs.size(),
                                            errs.data());
    return "ok";
  }
  if (cmd == "clear-errors") {
    int api_key;
    if (!(in >> api_key)) return "error usage: clear-errors <api-key>";
    rd_kafka_mock_clear_request_errors(mc, static_cast<int16_t>(api_key));
    return "ok";
  }
  if (cmd == "topic-error") {
    std::string topic;
    int e;
    if (!(in >> topic >> e)) return "error usage: topic-error <topic> <err>";
    rd_kafka_mock_topic_set_error(mc, topic.c_str(), static_cast<rd_kafka_resp_err_t>(e));
    return "ok";
  }
  if (cmd == "create-topic") {
    std::string topic;
    int partitions, rf;
    if (!(in >> topic >> partitions >> rf)) {
      return "error usage: create-topic <topic> <partitions> <replication-factor>";
    }
    return err_result(rd_kafka_mock_topic_create(mc, topic.c_str(), partitions, rf));
  }
  return "error unknown command \"" + cmd + "\"";
}

// Turns Nagle's algorithm off on the mock brokers' listening sockets; the connections they
// accept inherit it. A real Kafka broker sets TCP_NODELAY on every connection; the mock does
// not, and a producer's pipelined requests for several partitions then waited for delayed ACKs:
// a flush spanning several partitions took 40-50 ms instead of about 1 (docs/performance.md,
// finding 23). The mock keeps its sockets to itself, so they are found among this process's
// descriptors: every listening TCP socket here is a mock broker's. Returns how many were set.
int DisableNagleOnListeners() {
  int set = 0;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  while (dirent* e = readdir(dir)) {
    int fd = std::atoi(e->d_name);
    if (fd <= 2 || fd == dirfd(dir)) continue;
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) continue;
    if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) continue;
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++set;
  }
  closedir(dir);
  return set;
}

}  // namespace

int main(int argc, char** argv) {
  int brokers = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--brokers" && i + 1 < argc) {
      brokers = std::atoi(argv[++i]);
    } else {
      std::cerr << "usage: treaty-devbroker [--brokers N]\n";
      return 2;
    }
  }
  if (brokers < 1 || brokers > 9) {
    std::cerr << "treaty-devbroker: --brokers must be 1 to 9\n";
    return 2;
  }

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    std::cerr << "treaty-devbroker: " << errstr << "\n";
    return 1;
  }
  rd_kafka_mock_cluster_t* mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (mc == nullptr) {
    std::cerr << "treaty-devbroker: could not create the mock cluster\n";
    return 1;
  }
  if (DisableNagleOnListeners() < brokers) {
    std::cerr << "treaty-devbroker: warning: could not turn Nagle off on every broker's socket\n";
  }
  Say(std::string("bootstrap ") + rd_kafka_mock_cluster_bootstraps(mc));

  std::thread commands([mc] {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line.empty()) continue;
      Say(Run(mc, line));
      DisableNagleOnListeners();  // a broker brought back up may listen on a new socket
    }
  });
  commands.detach();  // it may be blocked in a read when we stop; the process exit ends it

  int sig = 0;
  sigwait(&stop_signals, &sig);
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
