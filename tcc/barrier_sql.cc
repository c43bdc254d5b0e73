#include "tcc/barrier_sql.h"

namespace treaty::participant {

// Kept in step with Barrier::Run (tcc/barrier.cc): barrier_test runs one list of cases against
// both. The table is the kit's (Barrier::SchemaSql(), qualified here with public.). Each
// statement of a PL/pgSQL function takes a new snapshot under READ COMMITTED, so the SELECT after
// a conflicting INSERT sees the row that the INSERT waited for, exactly as the kit's second
// statement does.
const char* SqlBarrier::Script() {
  return R"sql(-- Treaty's SQL barrier, version 1 (treatyctl barrier install).
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('treaty.barrier install'));
CREATE SCHEMA IF NOT EXISTS treaty;
CREATE TABLE IF NOT EXISTS public.treaty_barrier (
  gid text NOT NULL, branch_id text NOT NULL, op text NOT NULL,
  written_by text NOT NULL,
  seq bigserial,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (gid, branch_id, op));

CREATE OR REPLACE FUNCTION treaty.barrier_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS 'SELECT 1';

-- The op whose effect p_op undoes ('' when p_op undoes nothing); NULL for an unknown op.
CREATE OR REPLACE FUNCTION treaty.barrier_origin(p_op text) RETURNS text
LANGUAGE sql IMMUTABLE AS $f$
  SELECT CASE p_op WHEN 'cancel' THEN 'try' WHEN 'compensate' THEN 'action'
                   WHEN 'try' THEN '' WHEN 'confirm' THEN '' WHEN 'action' THEN '' END
$f$;

-- Call it first in the transaction of the op's business change; see tcc/barrier_sql.h.
CREATE OR REPLACE FUNCTION treaty.barrier_enter(p_gid text, p_branch_id text, p_op text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $f$
DECLARE
  origin text := treaty.barrier_origin(p_op);
  origin_was_missing boolean := false;
  writer text;
BEGIN
  IF coalesce(p_gid, '') = '' THEN
    RAISE EXCEPTION 'treaty.barrier_enter: gid is required' USING ERRCODE = '22023';
  END IF;
  IF coalesce(p_branch_id, '') = '' THEN
    RAISE EXCEPTION 'treaty.barrier_enter: branch_id is required' USING ERRCODE = '22023';
  END IF;
  IF origin IS NULL THEN
    RAISE EXCEPTION 'treaty.barrier_enter: op must be try, confirm, cancel, action or compensate, not %',
      coalesce(quote_literal(p_op), 'NULL') USING ERRCODE = '22023';
  END IF;
  -- A cancel first writes its try's row: if that row was new, the try never ran (nothing to
  -- undo), and the row now stops a late try.
  IF origin <> '' THEN
    INSERT INTO public.treaty_barrier (gid, branch_id, op, written_by)
    VALUES (p_gid, p_branch_id, origin, p_op)
    ON CONFLICT (gid, branch_id, op) DO NOTHING;
    origin_was_missing := FOUND;
  END IF;
  -- The op's own row; a duplicate still running holds it, and this waits for it.
  INSERT INTO public.treaty_barrier (gid, branch_id, op, written_by)
  VALUES (p_gid, p_branch_id, p_op, p_op)
  ON CONFLICT (gid, branch_id, op) DO NOTHING;
  IF NOT FOUND THEN
    -- Either this op ran before, or (for a try) its cancel wrote this row first.
    SELECT b.written_by INTO writer FROM public.treaty_barrier b
    WHERE b.gid = p_gid AND b.branch_id = p_branch_id AND b.op = p_op;
    IF writer IS NOT NULL AND writer <> p_op THEN
      RETURN 'hanging';
    END IF;
    RETURN 'duplicate';
  END IF;
  IF origin_was_missing THEN
    RETURN 'null_compensation';
  END IF;
  RETURN 'applied';
END
$f$;

COMMENT ON FUNCTION treaty.barrier_enter(text, text, text) IS
  'Treaty barrier: applied | duplicate | null_compensation | hanging (see docs/participants.md)';
COMMIT;
)sql";
}

}  // namespace treaty::participant
