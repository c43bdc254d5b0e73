#include "outbox/outbox.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Stringifier.h>

#include <sstream>

#include "common/json_text.h"
#include "common/protocol/protocol.h"

namespace treaty::participant {

const char* Outbox::SchemaSql() {
  return "CREATE TABLE IF NOT EXISTS treaty_outbox ("
         " id bigserial PRIMARY KEY,"
         " event_id text NOT NULL UNIQUE,"
         " aggregate_type text NOT NULL,"
         " aggregate_id text NOT NULL,"
         " aggregate_key text GENERATED ALWAYS AS (aggregate_type || ':' || aggregate_id) STORED,"
         " event_type text NOT NULL,"
         " topic text NOT NULL,"
         " key text,"
         " payload jsonb NOT NULL,"
         " headers jsonb NOT NULL DEFAULT '{}',"
         " created_at timestamptz NOT NULL DEFAULT now(),"
         " status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),"
         " sent_at timestamptz,"
         " attempts integer NOT NULL DEFAULT 0,"
         " last_error text);"
         "CREATE INDEX IF NOT EXISTS treaty_outbox_pending ON treaty_outbox (id) "
         " WHERE status = 'pending';"
         "CREATE INDEX IF NOT EXISTS treaty_outbox_sent ON treaty_outbox (sent_at) "
         " WHERE status = 'sent';"
         // Stamped by its default from the writing transaction's context: writers (in any
         // language) that never name the column need no change, and a table whose schema was
         // not updated yet (a lock held at start) still takes their rows.
         "ALTER TABLE treaty_outbox ADD COLUMN IF NOT EXISTS traceparent text "
         " DEFAULT NULLIF(current_setting('treaty.traceparent', true), '')";
}

void Outbox::SetTraceContext(pqxx::transaction_base& tx, const std::string& traceparent) {
  if (protocol::ValidTraceParent(traceparent).empty()) return;
  tx.exec_params("SELECT set_config('treaty.traceparent', $1, true)", traceparent);
}

void Outbox::Append(pqxx::transaction_base& tx, const OutboxEvent& e, bool notify) {
  Poco::JSON::Object headers;
  for (const auto& [k, v] : e.headers) headers.set(k, v);
  std::ostringstream h;
  Poco::JSON::Stringifier::condense(headers, h);
  tx.exec_params(
      "INSERT INTO treaty_outbox (event_id, aggregate_type, aggregate_id, event_type, topic, key, "
      "payload, headers) VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), $7::jsonb, $8::jsonb)",
      e.event_id, e.aggregate_type, e.aggregate_id, e.event_type, e.topic, e.key, e.payload_json,
      h.str());
  if (notify) tx.exec("NOTIFY treaty_outbox");
}

std::string Outbox::MessageJson(const OutboxEvent& e) {
  std::string out = "{\"event_id\":" + JsonQuote(e.event_id) +
                    ",\"aggregate_type\":" + JsonQuote(e.aggregate_type) +
                    ",\"aggregate_id\":" + JsonQuote(e.aggregate_id) +
                    ",\"event_type\":" + JsonQuote(e.event_type) +
                    ",\"topic\":" + JsonQuote(e.topic);
  if (!e.key.empty()) out += ",\"key\":" + JsonQuote(e.key);
  out += ",\"payload\":" + (e.payload_json.empty() ? std::string("{}") : e.payload_json);
  out += ",\"headers\":{";
  bool first = true;
  for (const auto& [k, v] : e.headers) {
    out += (first ? "" : ",") + JsonQuote(k) + ":" + JsonQuote(v);
    first = false;
  }
  return out + "}}";
}

void Outbox::AppendForWal(pqxx::transaction_base& tx, const OutboxEvent& e, WalWrite how) {
  if (how == WalWrite::kMessage) {
    // The transaction's trace context, when it has one, as the message's "traceparent".
    tx.exec_params(
        "SELECT pg_logical_emit_message(true, 'treaty_outbox', CASE WHEN "
        "coalesce(current_setting('treaty.traceparent', true), '') = '' THEN $1::text ELSE "
        "($1::text::jsonb || jsonb_build_object('traceparent', "
        "current_setting('treaty.traceparent', true)))::text END)",
        MessageJson(e));
    return;
  }
  Poco::JSON::Object headers;
  for (const auto& [k, v] : e.headers) headers.set(k, v);
  std::ostringstream h;
  Poco::JSON::Stringifier::condense(headers, h);
  // Two statements in one round trip (the simple protocol takes no parameters: quoted
  // literals); currval is this session's last id, the row just inserted.
  tx.exec(
      "INSERT INTO treaty_outbox (event_id, aggregate_type, aggregate_id, event_type, topic, "
      "key, payload, headers) VALUES (" +
      tx.quote(e.event_id) + ", " + tx.quote(e.aggregate_type) + ", " + tx.quote(e.aggregate_id) +
      ", " + tx.quote(e.event_type) + ", " + tx.quote(e.topic) + ", NULLIF(" + tx.quote(e.key) +
      ", ''), " + tx.quote(e.payload_json) + "::jsonb, " + tx.quote(h.str()) +
      "::jsonb); DELETE FROM treaty_outbox WHERE id = "
      "currval(pg_get_serial_sequence('treaty_outbox', 'id'))");
}

const char* Inbox::SchemaSql() {
  return "CREATE TABLE IF NOT EXISTS treaty_inbox ("
         " event_id text PRIMARY KEY, topic text NOT NULL,"
         " received_at timestamptz NOT NULL DEFAULT now());"
         // The applied event's traceparent, from the applying transaction's context (Claim
         // never names the column: a table not yet altered still takes its rows).
         "ALTER TABLE treaty_inbox ADD COLUMN IF NOT EXISTS traceparent text "
         " DEFAULT NULLIF(current_setting('treaty.traceparent', true), '')";
}

bool Inbox::Claim(pqxx::transaction_base& tx, const std::string& event_id,
                  const std::string& topic) {
  pqxx::result r = tx.exec_params(
      "INSERT INTO treaty_inbox (event_id, topic) VALUES ($1, $2) ON CONFLICT (event_id) "
      "DO NOTHING RETURNING 1",
      event_id, topic);
  return !r.empty();
}

}  // namespace treaty::participant
