#!/usr/bin/python3
"""inventory_participant.py: a Treaty participant in Python, with only HTTP and the SQL barrier.

The same stock service as the C++ demo's inventory-svc, for TCC and sagas, written with
Debian's python3 and python3-psycopg2 and nothing of Treaty's but the protocol (docs/api.md,
docs/participants.md) and the barrier that `treatyctl barrier install` puts in its database:

    stock(sku, available, reserved, sold)
    POST /tcc/try      {"sku", "qty"}  available -> reserved   (409 when short or unknown)
    POST /tcc/confirm                   reserved -> sold
    POST /tcc/cancel                    reserved -> available
    POST /saga/reserve (action)         available -> sold      (409 when short or unknown)
    POST /saga/release (compensate)     sold -> available
    GET  /stock/{sku}                   the row, as JSON
    POST /admin/stock  {"sku", "available"}
    GET  /healthz

Each op is one local transaction: SELECT treaty.barrier_enter(gid, branch_id, op) first, the
business change only when it answers 'applied', and commit (the barrier's rows go with it).

    inventory_participant.py --config FILE [--address-file FILE]

FILE is JSON (which is YAML too): {"listen": "127.0.0.1:8510",
"database": "postgresql://inventory@127.0.0.1:5432/inventory"}. With port 0 it takes a free
port, and writes host:port to --address-file once it serves.
"""

import argparse
import json
import os
import re
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import psycopg2.errors
import psycopg2.pool

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (
  sku text PRIMARY KEY,
  available integer NOT NULL CHECK (available >= 0),
  reserved integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  sold integer NOT NULL DEFAULT 0 CHECK (sold >= 0))
"""


class Reply(Exception):
    """An answer other than 200: 409 refused for good, 400 bad request, 503 ask again."""

    def __init__(self, status, message, field=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def sku_qty(payload):
    sku, qty = payload.get("sku"), payload.get("qty")
    if not isinstance(sku, str) or not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
        raise Reply(409, 'payload needs "sku" (string) and "qty" (positive integer)')
    return sku, qty


def take(cur, payload, into):
    """available -> `into` (reserved or sold); 409 when the SKU is short or unknown."""
    sku, qty = sku_qty(payload)
    cur.execute(f"UPDATE stock SET available = available - %s, {into} = {into} + %s "
                "WHERE sku = %s AND available >= %s RETURNING 1", (qty, qty, sku, qty))
    if cur.fetchone():
        return "reserved"
    cur.execute("SELECT available FROM stock WHERE sku = %s", (sku,))
    row = cur.fetchone()
    if row is None:
        raise Reply(409, f"unknown sku {sku}")
    raise Reply(409, f"out of stock: sku {sku} has {row[0]}, asked {qty}")


def move(cur, payload, source, target, result):
    sku, qty = sku_qty(payload)
    cur.execute(f"UPDATE stock SET {source} = {source} - %s, {target} = {target} + %s "
                "WHERE sku = %s", (qty, qty, sku))
    return result


# path -> (the protocol ops it serves, the business change)
ROUTES = {
    "/tcc/try": (("try",), lambda cur, p, op: take(cur, p, "reserved")),
    "/tcc/confirm": (("confirm",), lambda cur, p, op: move(cur, p, "reserved", "sold", "sold")),
    "/tcc/cancel": (("cancel",),
                    lambda cur, p, op: move(cur, p, "reserved", "available", "released")),
    # Treaty sends a saga step's action as op "action" and its compensation as "compensate".
    "/saga/reserve": (("action",), lambda cur, p, op: take(cur, p, "sold")),
    "/saga/release": (("compensate",),
                      lambda cur, p, op: move(cur, p, "sold", "available", "released")),
}

BARRIER_ANSWERS = {
    "duplicate": (200, "skipped: already done"),
    "null_compensation": (200, "skipped: nothing to undo (null compensation)"),
    "hanging": (409, "skipped: cancelled before it arrived"),
}


def parse_call(raw):
    """The protocol body; Reply(400) naming the field when it is not one."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise Reply(400, f"body is not valid JSON: {e}")
    if not isinstance(body, dict):
        raise Reply(400, "body must be a JSON object")
    for key in ("gid", "branch_id", "op", "mode"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise Reply(400, "is required", key)
    payload = body.get("payload")
    body["payload"] = payload if isinstance(payload, dict) else {}
    return body


class Participant:
    def __init__(self, database_url):
        self.pool = psycopg2.pool.ThreadedConnectionPool(1, 16, database_url)
        conn = self.pool.getconn()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(SCHEMA)
                cur.execute("SELECT to_regproc('treaty.barrier_enter') IS NOT NULL")
                if not cur.fetchone()[0]:
                    sys.exit("inventory_participant: the barrier is not installed in this "
                             "database: run treatyctl barrier install --url <database URL>")
        finally:
            self.pool.putconn(conn)

    def run_op(self, path, raw):
        """One op: (status, message)."""
        ops, change = ROUTES[path]
        call = parse_call(raw)
        if call["op"] not in ops:
            raise Reply(400, f"must be {' or '.join(ops)} at {path}, not {json.dumps(call['op'])}",
                        "op")
        conn = self.connection()
        try:
            with conn.cursor() as cur:
                # A duplicate still running holds the barrier row: waiting long for it would hold
                # a connection; answer "ask again" instead.
                cur.execute("SET LOCAL lock_timeout = '250ms'")
                cur.execute("SELECT treaty.barrier_enter(%s, %s, %s)",
                            (call["gid"], call["branch_id"], call["op"]))
                outcome = cur.fetchone()[0]
                if outcome == "applied":
                    result = (200, change(cur, call["payload"], call["op"]))
                else:
                    result = BARRIER_ANSWERS[outcome]
            if result[0] == 200:
                conn.commit()  # the barrier rows of a skip too: a null compensation's mark
            else:
                conn.rollback()
            return result
        except Reply:
            self.rollback(conn)  # a refused change leaves no barrier row: a retry may run
            raise
        except psycopg2.Error as e:
            # Not known yet (a lock timeout, the database restarting): Treaty asks again.
            self.rollback(conn)
            raise Reply(503, f"database: {str(e).strip()}")
        finally:
            # A connection the database dropped is closed, not pooled for the next call.
            self.pool.putconn(conn, close=bool(conn.closed))

    def connection(self):
        try:
            return self.pool.getconn()
        except psycopg2.pool.PoolError as e:  # every connection busy
            raise Reply(503, f"database: {e}")
        except psycopg2.Error as e:
            raise Reply(503, f"database: {str(e).strip()}")

    @staticmethod
    def rollback(conn):
        try:
            conn.rollback()
        except psycopg2.Error:
            pass  # the connection is gone; so is its transaction

    def stock(self, sku):
        conn = self.connection()
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT available, reserved, sold FROM stock WHERE sku = %s", (sku,))
                row = cur.fetchone()
        finally:
            self.pool.putconn(conn)
        if row is None:
            raise Reply(404, f"unknown sku {sku}")
        return {"sku": sku, "available": row[0], "reserved": row[1], "sold": row[2]}

    def set_stock(self, raw):
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise Reply(400, f"body is not valid JSON: {e}")
        sku, available = body.get("sku"), body.get("available")
        if not isinstance(sku, str) or not sku:
            raise Reply(400, "is required", "sku")
        if not isinstance(available, int) or available < 0:
            raise Reply(400, "must be an integer >= 0", "available")
        conn = self.connection()
        try:
            with conn, conn.cursor() as cur:
                cur.execute("INSERT INTO stock (sku, available) VALUES (%s, %s) ON CONFLICT (sku) "
                            "DO UPDATE SET available = EXCLUDED.available, reserved = 0, sold = 0",
                            (sku, available))
        finally:
            self.pool.putconn(conn)
        return {"sku": sku}


def make_handler(participant):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Treaty's client pools connections

        def answer(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, e):
            code = {409: "refused", 400: "invalid", 404: "not_found"}.get(e.status, "retry")
            err = {"code": code, "message": e.message}
            if e.field:
                err["field"] = e.field
            self.answer(e.status, {"error": err})

        def do_GET(self):
            try:
                if self.path == "/healthz":
                    return self.answer(200, {"status": "ok"})
                m = re.fullmatch(r"/stock/([^/?]+)", self.path)
                if m:
                    return self.answer(200, participant.stock(m.group(1)))
                self.answer(404, {"error": {"code": "not_found", "message": self.path}})
            except Reply as e:
                self.error(e)
            except psycopg2.Error as e:  # the database is unreachable: not known yet
                self.error(Reply(503, f"database: {str(e).strip()}"))

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                if self.path in ROUTES:
                    status, message = participant.run_op(self.path, raw)
                    if status == 200:
                        return self.answer(200, {"result": message})
                    raise Reply(status, message)
                if self.path == "/admin/stock":
                    return self.answer(200, participant.set_stock(raw))
                self.answer(404, {"error": {"code": "not_found", "message": self.path}})
            except Reply as e:
                self.error(e)
            except psycopg2.Error as e:  # the database is unreachable: not known yet
                self.error(Reply(503, f"database: {str(e).strip()}"))

        def log_message(self, fmt, *args):
            sys.stderr.write("inventory_participant: " + (fmt % args) + "\n")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="JSON: listen, database")
    parser.add_argument("--address-file", help="host:port is written here once serving")
    args = parser.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    for key in ("listen", "database"):
        if not isinstance(config.get(key), str):
            sys.exit(f"{args.config}: {key} is required (a string)")
    host, _, port = config["listen"].rpartition(":")
    participant = Participant(config["database"])
    server = ThreadingHTTPServer((host, int(port)), make_handler(participant))
    server.daemon_threads = True
    if args.address_file:
        with open(args.address_file + ".tmp", "w") as f:
            f.write("%s:%d\n" % server.server_address[:2])
        os.replace(args.address_file + ".tmp", args.address_file)
    def on_term(signum, frame):
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    server.serve_forever()


if __name__ == "__main__":
    main()
