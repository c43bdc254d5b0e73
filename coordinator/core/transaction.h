#pragma once

// The core domain: global transactions, their branches and the operations Treaty calls on them.
// Standard library only.

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/duration.h"
#include "coordinator/core/trace_context.h"

namespace treaty::core {

using TimePoint = std::chrono::system_clock::time_point;

enum class Mode { k2pc, kTcc, kSaga, kMsg };

// One vocabulary for every mode (see docs/design). Final: kCommitted, kAborted.
enum class TxStatus { kActive, kPrepared, kCommitting, kCommitted, kAborting, kAborted };

// The outcome of one operation on one branch so far.
enum class OpStatus {
  kPending,    // not called yet, or no definite answer yet (will be retried)
  kSucceeded,  // the participant answered 2xx
  kRefused,    // the participant answered 409: a final business "no"
};

std::string_view ModeName(Mode m);
std::optional<Mode> ParseMode(std::string_view s);
std::string_view StatusName(TxStatus s);
std::optional<TxStatus> ParseStatus(std::string_view s);
std::string_view OpStatusName(OpStatus s);
std::optional<OpStatus> ParseOpStatus(std::string_view s);
bool IsFinal(TxStatus s);

// Global transaction ids and branch ids: 1 to kMaxIdLength characters of [A-Za-z0-9._:-]. The
// restriction keeps them safe in URLs, headers, JSON and PostgreSQL prepared-transaction names.
inline constexpr size_t kMaxGidLength = 100;
inline constexpr size_t kMaxBranchIdLength = 64;
bool ValidId(std::string_view id, size_t max_length);

// One call of an op (one attempt), for the console's timeline: when it started (the calling
// coordinator's clock), how long it took, and what came of it (kPending: no definite answer).
struct OpCall {
  TimePoint started;
  std::chrono::microseconds took{0};
  OpStatus outcome = OpStatus::kPending;
};

// How many of an op's calls are kept (the latest): a store row stays bounded whatever the retries.
inline constexpr size_t kMaxOpCallsKept = 10;

// A saga step's own retry policy for one op (docs/sagas.md); what it leaves unset comes from
// treaty.yaml's `retry`.
struct OpRetry {
  // Forward actions: calls with no definite answer before the step gives up and the saga
  // compensates. Compensations, which never give up: calls before the transaction is flagged for
  // attention. 0: no limit (actions) or the default 5 (compensations).
  int attempts = 0;
  std::optional<Duration> backoff;      // the delay after the first attempt
  std::optional<Duration> max_backoff;  // the delay never grows past this

  bool operator==(const OpRetry&) const = default;
};

// The most of a step's answer kept as its output (its 2xx JSON body): 16 KiB. A larger answer
// is not kept, and a later step that names it cannot be built.
inline constexpr size_t kMaxOutputBytes = 16 << 10;

// One operation of one branch: what Treaty calls, and what came of it.
struct BranchOp {
  std::string branch_id;
  std::string op;    // "prepare", "commit", "abort", "try", "confirm", "cancel", ...
  int position = 0;  // the branch's place in the transaction (order of registration)
  std::string url;
  std::string payload_json = "{}";  // valid JSON, passed to the participant as "payload"
  std::optional<Duration> timeout;  // per-call timeout; the configured default when unset
  std::vector<std::string> after;   // saga: branches whose action must succeed before this one
  std::optional<OpRetry> retry;     // saga: this op's own retry policy
  // msg "publish" ops (no url): the message's topic, key and headers; the payload is its value.
  std::string topic;
  std::string message_key;
  std::map<std::string, std::string> message_headers;
  OpStatus status = OpStatus::kPending;
  int attempts = 0;
  std::string last_error;
  std::vector<OpCall> calls;  // the latest kMaxOpCallsKept calls, oldest first
  // Saga actions: the participant's 2xx answer when it was JSON of at most kMaxOutputBytes
  // ("": none). Kept with the op's state, the first success's for good: later steps' payloads
  // are built from it, also after a crash, without calling the step again.
  std::string output_json;

  // Appends one call, dropping the oldest beyond kMaxOpCallsKept.
  void AddCall(const OpCall& call);
};

// One state change, as the decision log keeps it.
struct LogEntry {
  TimePoint at;
  std::optional<TxStatus> from;  // none for the first entry
  TxStatus to;
  std::string reason;
  std::string actor;  // a person's move (force-finish): the caller's name; "" for Treaty's own
};

struct Transaction {
  std::string gid;
  Mode mode = Mode::k2pc;
  TxStatus status = TxStatus::kActive;
  // False while a client that began the transaction is still registering branches.
  bool submitted = false;
  // First-phase calls one branch at a time, in registration order (TCC "sequential").
  bool sequential = false;
  std::vector<BranchOp> ops;
  TimePoint deadline;
  TimePoint next_attempt_at;
  TimePoint created_at;
  TimePoint updated_at;
  std::string reason;          // why it ended as it did (or is ending)
  std::string attention;       // set while something keeps failing that a person should look at
  std::string definition;      // saga: "name@version" of the definition it was started from
  std::string request_json;    // the accepted request, for audit
  std::string request_digest;  // identifies the request, to recognise a repeated submission
  std::vector<LogEntry> log;   // filled by loads that ask for it
  // Its trace context and propagated headers, sent on each of its calls and messages.
  CallContext context;

  // The op named `op` of branch `branch_id`, or nullptr.
  BranchOp* FindOp(std::string_view branch_id, std::string_view op);
  // Indexes into ops of every op named `op`, in branch order.
  std::vector<size_t> OpsNamed(std::string_view op) const;
  // The ids of the branches, in order.
  std::vector<std::string> BranchIds() const;
};

}  // namespace treaty::core
