"""Fake Flume metrics endpoints on Python's http.server, for `flumewatch-bench footprint`.

One ThreadingHTTPServer per agent on 127.0.0.1 (ports chosen by the OS), protocol HTTP/1.1
(keep-alive), `/metrics` answered with the body of --body as a chunked reply the way a
BaseHTTPRequestHandler writes one: the head (flushed by end_headers), then the chunk, then the
terminating zero chunk. The first line printed is `PORTS p1 p2 ...`; `GET /-/polls` on any port
answers how many `/metrics` requests all of them served (the bench reads it before and after its
window). Stdlib only.
"""

import argparse
import http.server
import sys
import threading

polls = 0
polls_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b"{}"

    def do_GET(self):
        global polls
        path = self.path.split("?", 1)[0]
        if path == "/-/polls":
            with polls_lock:
                text = str(polls).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        if path != "/metrics":
            self.send_error(404)
            return
        with polls_lock:
            polls += 1
        body = self.body
        self.send_response(200)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format, *args):
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--body", required=True, help="file with the JSON to serve")
    args = parser.parse_args()
    with open(args.body, "rb") as f:
        Handler.body = f.read()
    servers = []
    for _ in range(args.agents):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("PORTS " + " ".join(str(s.server_address[1]) for s in servers), flush=True)
    # Until the bench closes our stdin (or kills us).
    sys.stdin.read()


if __name__ == "__main__":
    main()
