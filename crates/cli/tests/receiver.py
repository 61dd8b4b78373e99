"""Webhook receiver for the end-to-end tests (serve_e2e.rs).

    receiver.py PORT OUTFILE SECRETS_FILE [--host ADDR] [--fail-first N] [--status CODE] [--delay-ms MS]

Listens on ADDR:PORT (--host, default 127.0.0.1; port 0 picks a free port) and prints `listening PORT`
on its first line of output. For every POST it verifies the Standard
Webhooks signature with the reference implementation (PyPI
`standardwebhooks`) against the secret that SECRETS_FILE (a JSON object
mapping URL path -> whsec_ secret, re-read on each request) gives for the
request's path, appends one JSON line to OUTFILE and answers: 503 for the
first N requests (--fail-first), then CODE (--status, default 204).
--delay-ms makes it a slow receiver (the line is written after the delay,
just before the answer, so a sender that dies meanwhile sends it again).
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("outfile")
    ap.add_argument("secrets_file")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--status", type=int, default=204)
    ap.add_argument("--delay-ms", type=int, default=0)
    args = ap.parse_args()

    lock = threading.Lock()
    counter = {"requests": 0}
    out = open(args.outfile, "a", encoding="utf-8")

    def secret_for(path):
        try:
            with open(args.secrets_file, encoding="utf-8") as f:
                return json.load(f).get(path)
        except (OSError, ValueError):
            return None

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            secret = secret_for(self.path)
            verified = False
            error = None
            if secret:
                try:
                    standardwebhooks.Webhook(secret).verify(body, headers)
                    verified = True
                except Exception as e:  # noqa: BLE001 - recorded for the test
                    error = str(e)
            else:
                error = "no secret for this path"
            try:
                event = json.loads(body)
            except ValueError:
                event = {}
            data = event.get("data") if isinstance(event, dict) else None
            notices = (data or {}).get("notices") or []
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            with lock:
                counter["requests"] += 1
                status = 503 if counter["requests"] <= args.fail_first else args.status
                record = {
                    "path": self.path,
                    "webhook_id": headers.get("webhook-id"),
                    "verified": verified,
                    "error": error,
                    "status": status,
                    "event_id": event.get("id") if isinstance(event, dict) else None,
                    "specversion": event.get("specversion") if isinstance(event, dict) else None,
                    "type": event.get("type") if isinstance(event, dict) else None,
                    "notice_ids": [n.get("notice_id") for n in notices],
                    "tenant_of_each_notice": [n.get("tenant") for n in notices],
                    "artifacts": [n.get("artifact") for n in notices],
                    "advisories": [n.get("advisory") for n in notices],
                    "paths": [n.get("path") for n in notices],
                }
                out.write(json.dumps(record) + "\n")
                out.flush()
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 256

    server = Server((args.host, args.port), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
