#pragma once

// The outbox: a service appends events to its own table, treaty_outbox, in the same local
// transaction as its business change, so an event exists exactly when the change committed.
// treaty-relay publishes the rows to Kafka (docs/outbox.md describes the table for writers in
// any language). The inbox: a consumer records each event id in treaty_inbox in the same local
// transaction as the change the event causes, so a redelivered event is applied once.
//
// Trace context (W3C traceparent): a local transaction that set its context (SetTraceContext;
// the kit does it for every branch call that came with a traceparent, and for every event it
// consumes) stamps it on every outbox row it writes (the traceparent column's default), which
// the relay sends as the message's traceparent header; the inbox keeps the traceparent of each
// event it applied (treaty_inbox.traceparent), and sets it as the applying transaction's
// context, so that the events that one writes carry the same trace on.

#include <map>
#include <pqxx/pqxx>
#include <string>

namespace treaty::participant {

struct OutboxEvent {
  std::string event_id;        // unique: the consumers' dedupe key
  std::string aggregate_type;  // e.g. "order"
  std::string aggregate_id;    // events of one aggregate keep their order end to end
  std::string event_type;      // e.g. "OrderPlaced"
  std::string topic;
  std::string key;  // the Kafka key; empty: the aggregate id
  std::string payload_json = "{}";
  std::map<std::string, std::string> headers;
};

class Outbox {
 public:
  // Creates treaty_outbox (and its index) if missing; adds the traceparent column to a table
  // created before it (its default reads the transaction's context; rows already there keep
  // NULL).
  static const char* SchemaSql();

  // Sets `tx`'s trace context (treaty.traceparent, local to `tx`): the outbox and inbox rows it
  // writes afterwards carry `traceparent`. An invalid one ("" too) sets nothing.
  static void SetTraceContext(pqxx::transaction_base& tx, const std::string& traceparent);

  // Appends `e` in `tx`. With `notify`, also wakes listening relays when `tx` commits; a
  // transaction that will be PREPAREd must not notify (PostgreSQL forbids it): relays poll.
  static void Append(pqxx::transaction_base& tx, const OutboxEvent& e, bool notify = true);

  // How an event is written for treaty-relay's `mode: wal`, which reads the write-ahead log
  // and never the table.
  enum class WalWrite {
    // A row inserted and deleted in the same transaction, in one round trip: the WAL keeps the
    // insert, which the relay publishes; the table stays empty.
    kRowDeleted,
    // A transactional logical decoding message (pg_logical_emit_message) with the table's name
    // as prefix and the event as a JSON object: no table at all.
    kMessage,
  };
  static void AppendForWal(pqxx::transaction_base& tx, const OutboxEvent& e,
                           WalWrite how = WalWrite::kRowDeleted);
  // The content of kMessage: {"event_id":..,"aggregate_type":..,"aggregate_id":..,
  // "event_type":..,"topic":..,"key":..,"payload":{..},"headers":{..}} (docs/outbox.md).
  // AppendForWal adds "traceparent" when `tx` has a trace context.
  static std::string MessageJson(const OutboxEvent& e);
};

class Inbox {
 public:
  // Creates treaty_inbox if missing; adds its traceparent column to a table created before.
  static const char* SchemaSql();

  // Records `event_id` in `tx` (with `tx`'s trace context, if set); true if it is new (apply
  // the event), false if it was applied before (skip it). A concurrent duplicate waits for the
  // first, then sees it.
  static bool Claim(pqxx::transaction_base& tx, const std::string& event_id,
                    const std::string& topic);
};

}  // namespace treaty::participant
