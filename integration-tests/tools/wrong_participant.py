#!/usr/bin/python3
"""wrong_participant.py: a TCC and saga participant that breaks one rule on purpose, for the
test that `treatyctl verify-participant` names what is wrong.

State in memory: {"available", "frozen", "sold"} of one item, moved by qty (payload, default 1).
Correct by default; --config FILE (JSON) {"break": RULE} breaks one rule:

  repeat            a repeated op applies again (no idempotency)
  null-compensation a cancel whose try never ran releases what it never froze
  hanging           a try after its cancel is applied (and 200)
  unknown-op        any op at a URL is taken as that URL's op
  malformed         a body it cannot read is answered 200 (as if done)
  race              checks "done before?" then applies 500 ms later: concurrent duplicates all
                    pass the check

  POST /tcc/{try,confirm,cancel}, /saga/{action,compensate}; GET /probe: the state.
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTES = {"/tcc/try": "try", "/tcc/confirm": "confirm", "/tcc/cancel": "cancel",
          "/saga/action": "action", "/saga/compensate": "compensate"}
ORIGIN = {"cancel": "try", "compensate": "action"}
# op -> {counter: how it moves}
EFFECT = {"try": {"available": -1, "frozen": +1}, "confirm": {"frozen": -1, "sold": +1},
          "cancel": {"available": +1, "frozen": -1}, "action": {"available": -1, "sold": +1},
          "compensate": {"available": +1, "sold": -1}}


class State:
    def __init__(self, broken):
        self.broken = broken
        self.lock = threading.Lock()
        self.counts = {"available": 1000, "frozen": 0, "sold": 0}
        self.done = set()  # (gid, branch_id, op)

    def apply(self, op, qty):
        for k, d in EFFECT[op].items():
            self.counts[k] += d * qty

    def run(self, gid, branch, op, qty):
        key = (gid, branch, op)
        if self.broken == "race" and op not in ORIGIN:
            with self.lock:
                if any((gid, branch, u) in self.done for u, o in ORIGIN.items() if o == op):
                    return 409, "cancelled before it arrived"
                if key in self.done:
                    return 200, "skipped"
            time.sleep(0.5)  # the window between the check and the act
            with self.lock:
                self.done.add(key)
                self.apply(op, qty)
            return 200, "applied"
        with self.lock:
            origin = ORIGIN.get(op)
            if origin:
                if key in self.done and self.broken != "repeat":
                    return 200, "skipped"
                origin_key = (gid, branch, origin)
                ran = origin_key in self.done
                self.done.add(origin_key)
                self.done.add(key)
                if ran or self.broken == "null-compensation":
                    self.apply(op, qty)
                return 200, "undone"
            undone = any((gid, branch, u) in self.done for u, o in ORIGIN.items() if o == op)
            if undone:
                if self.broken != "hanging":
                    return 409, "cancelled before it arrived"
            elif key in self.done and self.broken != "repeat":
                return 200, "skipped"
            self.done.add(key)
            self.apply(op, qty)
            return 200, "applied"


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/probe":
                with state.lock:
                    return self.answer(200, dict(state.counts))
            self.answer(404, {"error": {"code": "not_found", "message": self.path}})

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            op = ROUTES.get(self.path)
            if op is None:
                return self.answer(404, {"error": {"code": "not_found", "message": self.path}})
            try:
                body = json.loads(raw)
                gid, branch = body["gid"], body["branch_id"]
                if not isinstance(gid, str) or not gid or not isinstance(branch, str):
                    raise ValueError("gid and branch_id are required")
            except (ValueError, KeyError, TypeError) as e:
                if state.broken == "malformed":
                    return self.answer(200, {"result": "ok"})
                return self.answer(400, {"error": {"code": "invalid", "message": str(e)}})
            if body.get("op") != op and state.broken != "unknown-op":
                return self.answer(400, {"error": {"code": "invalid", "field": "op",
                                                   "message": f"must be {op}"}})
            qty = (body.get("payload") or {}).get("qty", 1)
            status, message = state.run(gid, branch, op, qty)
            if status == 200:
                return self.answer(200, {"result": message})
            self.answer(status, {"error": {"code": "refused", "message": message}})

        def log_message(self, fmt, *args):
            sys.stderr.write("wrong_participant: " + (fmt % args) + "\n")

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--address-file", required=True)
    args = parser.parse_args()
    with open(args.config) as f:
        broken = json.load(f).get("break", "")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(State(broken)))
    server.daemon_threads = True
    with open(args.address_file + ".tmp", "w") as f:
        f.write("%s:%d\n" % server.server_address[:2])
    os.replace(args.address_file + ".tmp", args.address_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
