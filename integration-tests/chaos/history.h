#pragma once

// The chaos run's history: every request a client made and the answer it got, every fault the
// nemesis injected and healed, each stamped with the milliseconds since the run began. Written
// as JSON lines while the run goes (a killed run keeps what it had), read back by the checker.

#include <cstdint>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace treaty::chaos {

// One line of the history. Which fields mean something depends on `type`:
//   "invoke": a client starts a transaction: gid, mode, node (the coordinator asked, -1 for a
//             participant's own endpoint), sku, qty, card (sagas).
//   "answer": what a client got for one request of that transaction: gid, action ("begin",
//             "submit", "abort", "msg"), http (0: no answer: refused connection, timeout),
//             status (the transaction status in the body, if any), error.
//   "fault" / "heal": the nemesis starts or ends a fault: fault (its kind), target.
struct HistoryEvent {
  int64_t t_ms = 0;
  std::string type;
  std::string gid;
  std::string mode;  // "2pc", "tcc", "tcc-client", "saga", "saga-adhoc", "saga-abort", "msg"
  int node = -1;
  std::string sku;
  int64_t qty = 0;
  std::string card;
  std::string action;
  int http = 0;
  std::string status;
  std::string error;
  std::string fault;
  std::string target;
};

std::string ToJsonLine(const HistoryEvent& e);
Result<HistoryEvent> FromJsonLine(const std::string& line);

// Appends events to a file, one JSON line each, flushed at once. Thread-safe.
class HistoryWriter {
 public:
  static Result<std::unique_ptr<HistoryWriter>> Open(const std::string& path);

  // Stamps `e.t_ms` (unless set) and appends it.
  void Append(HistoryEvent e);
  int64_t NowMs() const;

 private:
  HistoryWriter() = default;
  std::mutex mu_;
  std::ofstream out_;
  int64_t start_ns_ = 0;
};

// Every event of a history file, in file order. A malformed line is an error naming its number.
Result<std::vector<HistoryEvent>> ReadHistory(const std::string& path);

}  // namespace treaty::chaos
