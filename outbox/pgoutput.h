#pragma once

// Decodes what PostgreSQL's logical replication protocol streams for the outbox: the messages of
// the built-in `pgoutput` plugin (protocol version 1, with `messages 'true'`), as documented in
// "Logical Replication Message Formats". Only what the WAL relay needs is kept: transaction
// boundaries, the relation descriptions, inserts into the outbox table, and logical decoding
// messages (pg_logical_emit_message) whose prefix is the outbox table's name. Everything else is
// recognised and skipped. Pure code: no connection, unit-tested on hand-made bytes.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace treaty::outbox {

// One outbox event, from a row or a message.
struct WalEvent {
  std::string event_id;
  std::string aggregate_type;
  std::string aggregate_id;
  std::string event_type;
  std::string topic;
  std::string key;  // empty: the aggregate id
  std::string payload = "{}";
  std::string headers = "{}";  // a JSON object of extra headers
  std::string traceparent;     // the writing transaction's trace context; "" none
  std::string status = "pending";
  // Why this event cannot be published (a malformed message): set aside as poison at once.
  std::string malformed;
};

// What one pgoutput message was.
struct PgOutputItem {
  enum class Kind { kOther, kBegin, kCommit, kEvent } kind = Kind::kOther;
  uint64_t commit_end_lsn = 0;  // kCommit: where the transaction's commit record ends
  bool transactional = true;    // kEvent from a message: false for a non-transactional one
  uint64_t message_lsn = 0;     // kEvent from a message: its own LSN
  WalEvent event;               // kEvent
};

class PgOutputDecoder {
 public:
  // `table`: the outbox table's name (any schema), also the prefix of the outbox's messages.
  explicit PgOutputDecoder(std::string table) : table_(std::move(table)) {}

  // Decodes one message (the payload of an XLogData). A malformed one is an error (the stream
  // cannot be trusted past it).
  Result<PgOutputItem> Decode(std::string_view message);

 private:
  struct Relation {
    bool outbox = false;
    std::vector<std::string> columns;
  };
  Result<PgOutputItem> DecodeInsert(std::string_view body);
  static void DecodeMessageContent(std::string_view content, WalEvent* e);

  std::string table_;
  std::map<uint32_t, Relation> relations_;
};

// The standby status update a replication client sends ('r'): written, flushed and applied
// positions, and the client's clock in microseconds since 2000-01-01.
std::string StandbyStatusUpdate(uint64_t written, uint64_t flushed, int64_t now_us,
                                bool reply_requested = false);

// The header of a CopyData message the server streams: 'w' (XLogData: wal_start, wal_end, the
// pgoutput message) or 'k' (keepalive: wal_end, reply requested).
struct ReplicationFrame {
  char kind = 0;
  uint64_t wal_start = 0;
  uint64_t wal_end = 0;
  bool reply_requested = false;
  std::string_view payload;  // 'w' only
};
Result<ReplicationFrame> ParseReplicationFrame(std::string_view data);

// "16/B374D848" -> 0x16B374D848; nullopt when malformed.
std::optional<uint64_t> ParseLsn(std::string_view text);
std::string FormatLsn(uint64_t lsn);

}  // namespace treaty::outbox
