#pragma once

// The participant protocol's words, defined once for both ends: the coordinator that calls
// branches and publishes messages, and the participant kit, the relay and the inbox that receive
// them (docs/protocol.md). Standard library only: the core domain uses it.
//
// A branch call is an HTTP POST of CallBody() to the op's URL, with the Treaty-* headers below;
// the answer is 2xx done, 409 refused for good, anything else not known yet (asked again).

#include <string>
#include <string_view>

namespace treaty::protocol {

// The ops a branch can name a URL for, by mode.
inline constexpr char kPrepare[] = "prepare";  // 2PC
inline constexpr char kCommit[] = "commit";
inline constexpr char kAbort[] = "abort";
inline constexpr char kTry[] = "try";  // TCC
inline constexpr char kConfirm[] = "confirm";
inline constexpr char kCancel[] = "cancel";
inline constexpr char kAction[] = "action";  // saga steps, msg branches
inline constexpr char kCompensate[] = "compensate";
inline constexpr char kQuery[] = "query";  // msg: the service's check-back
// A transactional message's delivery to Kafka: an op of its own, with no URL.
inline constexpr char kPublish[] = "publish";

// The headers of every branch call (the same values are in the body).
inline constexpr char kGidHeader[] = "Treaty-Gid";
inline constexpr char kBranchIdHeader[] = "Treaty-Branch-Id";
inline constexpr char kOpHeader[] = "Treaty-Op";

// The Kafka headers of every message Treaty delivers (transactional messages) or relays (outbox
// rows). Consumers drop duplicates by the event id (the kit's inbox does).
inline constexpr char kMessageIdHeader[] = "treaty-message-id";
inline constexpr char kEventIdHeader[] = "treaty-event-id";
inline constexpr char kEventTypeHeader[] = "treaty-event-type";
inline constexpr char kGidMessageHeader[] = "treaty-gid";

// W3C trace context (https://www.w3.org/TR/trace-context/), on branch calls, webhooks and
// Kafka messages alike.
inline constexpr char kTraceparentHeader[] = "traceparent";
inline constexpr char kTracestateHeader[] = "tracestate";

// A valid version-00 traceparent ("00-<32 hex>-<16 hex>-<2 hex>", lower case, ids not all
// zero): `header` itself, or "" for anything else.
std::string ValidTraceParent(std::string_view header);

// The trace id of a valid traceparent; "" for anything else.
std::string TraceIdOf(std::string_view traceparent);

// The body of a branch call: {"gid","branch_id","op","mode","payload"}. `gid` and `branch_id`
// must need no JSON escaping (the core's ValidId guarantees it) and `payload_json` must be
// valid JSON: the text is concatenated, not re-encoded.
std::string CallBody(std::string_view gid, std::string_view branch_id, std::string_view op,
                     std::string_view mode, std::string_view payload_json);

// The stable id of a transactional message: the same on every delivery attempt.
std::string MessageId(std::string_view gid, std::string_view branch_id);

}  // namespace treaty::protocol
