#!/usr/bin/python3
"""Fault-injecting HTTP proxy for registry client tests (loopback only).

Listens on two 127.0.0.1 ports (the main one and a "redirect target" one),
forwards requests to a plain-HTTP upstream registry, and applies rules that
the test sets through a control API on the main port:

  POST /__fault/rules   body: JSON list of rules, replacing the current ones
  GET  /__fault/log     JSON list of the requests seen (both ports)
  POST /__fault/bearer  body: {"user": U, "password": P, "identitytoken": T} -
                        from now on require Bearer tokens issued by GET /__token
                        (Basic U:P) or POST /__token (refresh_token grant with T)

A rule: {"method": "GET", "path": "regex", "action": A, "times": N, ...}
matching requests in order; each hit decrements "times" (absent = forever).
Actions:
  status     answer {"status": S} (default 500) with an optional
             "retry_after" header value, without contacting the upstream;
             the error body's code is "code" (default FAULT)
  drop       read the request, close the connection without answering
  cut        forward, send the headers and half of the body, then close
  truncate   forward, send only half of the body with a matching Content-Length
  corrupt    forward, flip one byte of the body
  redirect   answer 307 to the same path and query on the second port
Every request is logged with its port, method, path, Range and whether it
carried an Authorization header (and which scheme).

Writes "MAIN SECOND" (the two ports) to the file given by --port-file.
Stops by itself after --lifetime seconds.
"""
import argparse
import base64
import http.client
import http.server
import json
import re
import secrets
import socketserver
import sys
import threading
import time

STATE = {"rules": [], "log": [], "bearer": None, "tokens": set(), "token_log": []}
LOCK = threading.Lock()
UPSTREAM = ("127.0.0.1", 0)
PORTS = [0, 0]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status, headers, body, close=False):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status, obj, headers=()):
        self._send(status, [("Content-Type", "application/json")] + list(headers),
                   json.dumps(obj).encode())

    def _match(self):
        with LOCK:
            for rule in STATE["rules"]:
                if rule.get("method") and rule["method"] != self.command:
                    continue
                if rule.get("path") and not re.search(rule["path"], self.path):
                    continue
                if rule.get("port") == "second" and self.server.server_port != PORTS[1]:
                    continue
                if rule.get("port", "main") == "main" and self.server.server_port != PORTS[0]:
                    continue
                times = rule.get("times")
                if times is not None:
                    if times <= 0:
                        continue
                    rule["times"] = times - 1
                return rule
        return None

    def _control(self, body):
        if self.path == "/__fault/rules" and self.command == "POST":
            with LOCK:
                STATE["rules"] = json.loads(body or b"[]")
            return self._json(200, {"ok": True})
        if self.path == "/__fault/log":
            with LOCK:
                return self._json(200, {"requests": STATE["log"], "tokens": STATE["token_log"]})
        if self.path == "/__fault/bearer" and self.command == "POST":
            with LOCK:
                STATE["bearer"] = json.loads(body)
            return self._json(200, {"ok": True})
        return self._json(404, {"errors": [{"code": "UNKNOWN", "message": "no such control"}]})

    def _token(self, body):
        cfg = STATE["bearer"]
        auth = self.headers.get("Authorization", "")
        q = self.path.split("?", 1)[1] if "?" in self.path else ""
        params = [p.split("=", 1) for p in q.split("&") if p]
        form = {}
        if self.command == "POST":
            for part in body.decode().split("&"):
                if "=" in part:
                    k, v = part.split("=", 1)
                    form[k] = v
        with LOCK:
            STATE["token_log"].append({"query": q, "basic": auth.startswith("Basic "),
                                       "method": self.command, "form": form})
        if self.command == "POST":
            # OAuth2 refresh-token grant with an identity token.
            if (form.get("grant_type") == "refresh_token"
                    and form.get("refresh_token") == cfg.get("identitytoken")):
                tok = "tok-" + secrets.token_hex(8)
                with LOCK:
                    STATE["tokens"].add(tok)
                return self._json(200, {"access_token": tok, "expires_in": 300})
            return self._json(401, {"details": "invalid refresh token"})
        want = "Basic " + base64.b64encode(
            (cfg["user"] + ":" + cfg["password"]).encode()).decode()
        if auth != want:
            return self._json(401, {"details": "incorrect username or password"},
                              [("WWW-Authenticate", 'Basic realm="token"')])
        tok = "tok-" + secrets.token_hex(8)
        with LOCK:
            STATE["tokens"].add(tok)
        return self._json(200, {"token": tok, "expires_in": 300, "params": params})

    def _handle(self):
        body = self._body()
        port = self.server.server_port
        auth = self.headers.get("Authorization")
        with LOCK:
            STATE["log"].append({
                "port": "main" if port == PORTS[0] else "second",
                "method": self.command, "path": self.path,
                "range": self.headers.get("Range"),
                "auth": auth.split(" ", 1)[0] if auth else None,
            })
        if self.path.startswith("/__fault/"):
            return self._control(body)
        if self.path.startswith("/__token"):
            return self._token(body)
        cfg = STATE["bearer"]
        if cfg is not None and port == PORTS[0]:
            tok = auth[7:] if auth and auth.startswith("Bearer ") else None
            with LOCK:
                valid = tok in STATE["tokens"]
            if not valid:
                m = re.match(r"/v2/(.+?)/(manifests|blobs|tags)/", self.path)
                scope = ""
                if m:
                    action = "pull" if self.command in ("GET", "HEAD") else "pull,push"
                    scope = ',scope="repository:%s:%s"' % (m.group(1), action)
                realm = "http://127.0.0.1:%d/__token" % PORTS[0]
                return self._json(401, {"errors": [{"code": "UNAUTHORIZED",
                                                    "message": "authentication required"}]},
                                  [("WWW-Authenticate",
                                    'Bearer realm="%s",service="fault-proxy"%s' % (realm, scope))])
        rule = self._match()
        action = rule.get("action") if rule else None
        if action == "status":
            headers = []
            if rule.get("retry_after") is not None:
                headers.append(("Retry-After", str(rule["retry_after"])))
            status = int(rule.get("status", 500))
            return self._json(status, {"errors": [{"code": rule.get("code", "FAULT"),
                                                   "message": "injected %d" % status}]},
                              headers)
        if action == "drop":
            self.close_connection = True
            return
        if action == "redirect":
            loc = "http://127.0.0.1:%d%s" % (PORTS[1], self.path)
            return self._send(307, [("Location", loc)], b"")
        conn = http.client.HTTPConnection(*UPSTREAM, timeout=30)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("authorization", "connection", "content-length")}
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        out_headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        if self.command == "HEAD":
            length = resp.getheader("Content-Length") or "0"
            self.send_response(resp.status)
            for k, v in out_headers:
                self.send_header(k, v)
            self.send_header("Content-Length", length)
            self.end_headers()
            return
        if action == "cut" and len(data) > 1:
            self.send_response(resp.status)
            for k, v in out_headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if action == "truncate" and len(data) > 1:
            data = data[: len(data) // 2]
        if action == "corrupt" and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self._send(resp.status, out_headers, data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global UPSTREAM
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--lifetime", type=float, default=600)
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    UPSTREAM = (host, int(port))
    main_srv = Server(("127.0.0.1", 0), Handler)
    second = Server(("127.0.0.1", 0), Handler)
    PORTS[0] = main_srv.server_port
    PORTS[1] = second.server_port
    for s in (main_srv, second):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    with open(args.port_file + ".tmp", "w") as f:
        f.write("%d %d\n" % (PORTS[0], PORTS[1]))
    import os
    os.rename(args.port_file + ".tmp", args.port_file)
    time.sleep(args.lifetime)
    sys.exit(0)


if __name__ == "__main__":
    main()
