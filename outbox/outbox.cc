#include "outbox/outbox.h"

#include <Poco/JSON/Object.h>
#include <Poco/JSON/Stringifier.h>

#include <sstream>

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
         " WHERE status = 'sent'";
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

const char* Inbox::SchemaSql() {
  return "CREATE TABLE IF NOT EXISTS treaty_inbox ("
         " event_id text PRIMARY KEY, topic text NOT NULL,"
         " received_at timestamptz NOT NULL DEFAULT now())";
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
