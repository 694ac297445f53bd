#!/usr/bin/python3
"""A stand-in for a pg_ha node, used to test the harness plumbing (HAProxy
routing, partitions) without PostgreSQL or the extension.

Usage: fake_node.py NAME ROLE     (ROLE: primary | replica | down)

- HTTP on :8008 answers GET/HEAD/OPTIONS like Patroni's health endpoints for
  the given role (/primary, /leader, /read-write: 200 only on a primary;
  /replica: 200 only on a replica; /read-only, /health: 200 on both).
- TCP on :5432 writes "NAME\\n" to every client and closes: enough to see where
  HAProxy routed a connection.
"""
import http.server
import socket
import socketserver
import sys
import threading

NAME, ROLE = sys.argv[1], sys.argv[2]


def status_for(path):
    path = path.split("?", 1)[0].rstrip("/") or "/"
    if ROLE == "down":
        return 503
    if path in ("/primary", "/master", "/leader", "/read-write"):
        return 200 if ROLE == "primary" else 503
    if path == "/replica":
        return 200 if ROLE == "replica" else 503
    return 200


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body=True):
        code = status_for(self.path)
        payload = ('{"name": "%s", "role": "%s"}\n' % (NAME, ROLE)).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def do_GET(self):
        self._answer()

    def do_OPTIONS(self):
        self._answer()

    def do_HEAD(self):
        self._answer(body=False)

    def log_message(self, fmt, *args):
        pass


class NameServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class NameHandler(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            self.request.sendall((NAME + "\n").encode())
            self.request.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class HTTPServer(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    api = HTTPServer(("0.0.0.0", 8008), Handler)
    pg = NameServer(("0.0.0.0", 5432), NameHandler)
    threading.Thread(target=pg.serve_forever, daemon=True).start()
    print("fake node %s (%s) listening on :8008 and :5432" % (NAME, ROLE), flush=True)
    api.serve_forever()


if __name__ == "__main__":
    main()
