#include "coordinator/store/migrations.h"

namespace treaty::store {

const std::vector<Migration>& Migrations() {
  static const std::vector<Migration> kMigrations = {
      {1, "transactions, branches and the decision log", R"sql(
CREATE TABLE treaty.transactions (
  gid             text PRIMARY KEY,
  mode            text NOT NULL CHECK (mode IN ('2pc', 'tcc', 'saga', 'msg')),
  status          text NOT NULL CHECK (status IN
                    ('active', 'prepared', 'committing', 'committed', 'aborting', 'aborted')),
  request         jsonb NOT NULL,
  request_digest  text NOT NULL,
  submitted       boolean NOT NULL,
  sequential      boolean NOT NULL DEFAULT false,
  definition      text,
  reason          text,
  attention       text,
  deadline        timestamptz NOT NULL,
  next_attempt_at timestamptz NOT NULL,
  wake_requested  boolean NOT NULL DEFAULT false,
  owner           text,
  lease_until     timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transactions_due ON treaty.transactions (status, next_attempt_at);

-- One row per operation of a branch (prepare, commit, abort; try, confirm, cancel; ...).
CREATE TABLE treaty.branches (
  gid        text NOT NULL REFERENCES treaty.transactions (gid) ON DELETE CASCADE,
  branch_id  text NOT NULL,
  op         text NOT NULL,
  position   integer NOT NULL,
  url        text NOT NULL,
  payload    jsonb NOT NULL,
  timeout_ms integer,
  after_ids  text NOT NULL DEFAULT '',  -- saga: comma-separated step ids
  msg_key     text,                      -- msg: the message's Kafka key
  msg_headers jsonb,                     -- msg: the message's headers
  status     text NOT NULL CHECK (status IN ('pending', 'succeeded', 'refused')),
  attempts   integer NOT NULL DEFAULT 0,
  last_error text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (gid, branch_id, op)
);

CREATE TABLE treaty.decision_log (
  id          bigserial PRIMARY KEY,
  gid         text NOT NULL,
  from_status text,
  to_status   text NOT NULL,
  reason      text,
  at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decision_log_by_gid ON treaty.decision_log (gid, id);
)sql"},
      {2, "an index of unfinished transactions by due time, for claiming", R"sql(
-- The claim takes the earliest due unfinished transactions: with this index it reads them in
-- order instead of sorting every due row (a large backlog after a restart), and finished
-- transactions, the vast majority, are not in it at all.
CREATE INDEX transactions_unfinished_due ON treaty.transactions (next_attempt_at)
  WHERE status IN ('active', 'prepared', 'committing', 'aborting');
)sql"},
      {3, "drop the index by (status, due time), which migration 2 made redundant", R"sql(
-- Nothing reads it since the claim uses transactions_unfinished_due, and every change of status
-- (at least three per transaction) paid for an entry in it.
DROP INDEX treaty.transactions_due;
)sql"},
      {4, "a transaction's branch ops in its own row instead of a row per op", R"sql(
-- A 2PC transaction with two branches wrote seven rows at its creation (six of them ops) and
-- updated two more at each decision, each with its index entries and a foreign key check.
-- Its ops now live in its row: `ops` holds what does not change (an array of the op
-- definitions, in the order they were added), `op_state` what does (an object keyed by
-- "<branch id>/<op>": {status, attempts, last_error}). Ids have no '/' (core::ValidId).
-- Two columns, so that recording an outcome leaves a large (TOASTed) `ops` as it is.
ALTER TABLE treaty.transactions
  ADD COLUMN ops jsonb NOT NULL DEFAULT '[]',
  ADD COLUMN op_state jsonb NOT NULL DEFAULT '{}';
UPDATE treaty.transactions t SET ops = b.ops, op_state = b.op_state FROM (
  SELECT gid,
         jsonb_agg(jsonb_build_object('branch_id', branch_id, 'op', op, 'position', position,
                                      'url', url, 'payload', payload, 'timeout_ms', timeout_ms,
                                      'after_ids', after_ids, 'msg_key', msg_key,
                                      'msg_headers', msg_headers)
                   ORDER BY position, op) AS ops,
         jsonb_object_agg(branch_id || '/' || op,
                          jsonb_build_object('status', status, 'attempts', attempts,
                                             'last_error', last_error)) AS op_state
  FROM treaty.branches GROUP BY gid) b
WHERE b.gid = t.gid;
DROP TABLE treaty.branches;
)sql"},
      {5, "a message's topic in its own field of a publish op, not in its url", R"sql(
-- Publish ops named their topic as the url "kafka:<topic>"; the topic now has its own key in
-- the op's definition and the url is empty (a message has no participant URL).
UPDATE treaty.transactions t SET ops = (
  SELECT jsonb_agg(CASE WHEN o->>'op' = 'publish' AND o->>'url' LIKE 'kafka:%'
                        THEN o || jsonb_build_object('topic', substr(o->>'url', 7), 'url', '')
                        ELSE o END ORDER BY n)
  FROM jsonb_array_elements(t.ops) WITH ORDINALITY AS e(o, n))
WHERE t.mode = 'msg' AND jsonb_array_length(t.ops) > 0;
)sql"},
      {6, "who forced a transaction's end; saga definitions by version", R"sql(
-- A person's move (force-finish) names its caller; Treaty's own moves leave it NULL.
ALTER TABLE treaty.decision_log ADD COLUMN actor text;

-- Every version of a saga definition any treatyd loaded, so that any of them can start an older
-- version by name@version while transactions still run on it (docs/sagas.md).
CREATE TABLE treaty.saga_versions (
  name      text NOT NULL,
  version   text NOT NULL,
  file      text NOT NULL,
  body      text NOT NULL,
  loaded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, version)
);

-- How many unfinished transactions run on each version: only named sagas' unfinished rows are
-- in it.
CREATE INDEX transactions_unfinished_definition ON treaty.transactions (definition)
  WHERE definition IS NOT NULL AND status IN ('active', 'prepared', 'committing', 'aborting');
)sql"},
      {7, "an index of finished transactions by their last change, for the retention purge", R"sql(
-- The purge (docs/recovery.md, "Retention") deletes the finished transactions whose last change
-- is older than retention.history, oldest first, a batch at a time; with this index each batch
-- reads just its rows instead of scanning the table, and the oldest kept one (a metric) is its
-- first entry. Unfinished transactions are not in it. The cost on the hot path is one index
-- entry per finished transaction, written by the transition that finishes it
-- (docs/performance.md, finding 39).
CREATE INDEX transactions_finished_by_update ON treaty.transactions (updated_at)
  WHERE status IN ('committed', 'aborted');
)sql"},
      {10, "a transaction's trace context and propagated headers", R"sql(
-- The W3C trace context a transaction was started with (or began) and the headers it passes on
-- to its participants (propagate_headers): {"trace_id", "span_id", "parent_span_id", "flags",
-- "tracestate", "headers": {...}, "secret": [...]}. NULL for transactions from before.
ALTER TABLE treaty.transactions ADD COLUMN call_context jsonb;
)sql"},
      {11, "completion webhooks: one delivery row per event, written with the state change", R"sql(
-- A transaction started with "notify": {"url", "events"} (kept in its request) gets one row here
-- per event it asked for, written by the same statement that makes the change (a trigger), so
-- that no decision is ever without its notification, whatever crashes when. treatyd delivers
-- them (docs/api.md, completion webhooks) until the receiver answers 2xx.
CREATE TABLE treaty.webhook_deliveries (
  id              bigserial PRIMARY KEY,
  gid             text NOT NULL,
  event           text NOT NULL CHECK (event IN ('committed', 'aborted', 'attention')),
  url             text NOT NULL,
  body            jsonb NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (gid, event)
);
CREATE INDEX webhook_deliveries_due ON treaty.webhook_deliveries (next_attempt_at)
  WHERE delivered_at IS NULL;

CREATE FUNCTION treaty.enqueue_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ev text;
BEGIN
  IF NOT (NEW.request ? 'notify') THEN
    RETURN NEW;
  END IF;
  IF NEW.status IN ('committed', 'aborted') AND OLD.status IS DISTINCT FROM NEW.status THEN
    ev := NEW.status;
  ELSIF coalesce(NEW.attention, '') <> '' AND coalesce(OLD.attention, '') = '' THEN
    ev := 'attention';
  ELSE
    RETURN NEW;
  END IF;
  IF NOT coalesce(NEW.request -> 'notify' -> 'events', '["committed","aborted","attention"]'::jsonb)
         ? ev THEN
    RETURN NEW;
  END IF;
  INSERT INTO treaty.webhook_deliveries (gid, event, url, body)
  VALUES (NEW.gid, ev, NEW.request -> 'notify' ->> 'url',
          jsonb_build_object('gid', NEW.gid, 'event', ev, 'mode', NEW.mode,
                             'status', NEW.status, 'reason', coalesce(NEW.reason, ''),
                             'attention', coalesce(NEW.attention, ''),
                             'trace_id', coalesce(NEW.call_context ->> 'trace_id', ''),
                             'at', to_char(now() AT TIME ZONE 'UTC',
                                           'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
  ON CONFLICT (gid, event) DO NOTHING;
  RETURN NEW;
END
$$;

CREATE TRIGGER transactions_enqueue_webhook
  AFTER UPDATE OF status, attention ON treaty.transactions
  FOR EACH ROW EXECUTE FUNCTION treaty.enqueue_webhook();
)sql"},
  };
  return kMigrations;
}

}  // namespace treaty::store
