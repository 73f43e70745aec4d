#!/usr/bin/env python3
"""Serves a directory on 127.0.0.1 for the stand-in harness (tests/standins/README.md).

    serve.py ROOT PORTFILE LOG

Binds a free port on 127.0.0.1, writes it to PORTFILE (atomically, once listening) and logs
every request as "STATUS METHOD PATH" to LOG. Query strings are ignored, so that a key served
for a key server's /pks/lookup?op=get&search=... is the file ROOT/.../pks/lookup.

/npm/... is not a stand-in: a reverse proxy to the real npm registry (https://registry.npmjs.org/),
the shape of `--mirror npm=URL`. The build's chroot then reaches the registry over plain HTTP
on 127.0.0.1 through the host, whose CA store is the one that can verify the registry where
TLS is intercepted; the bytes are the registry's (the build checks Node.js's and npm's SHA-256,
npm the modules' integrity). Tarball URLs in the registry's JSON are rewritten to this proxy.
"""
import functools
import os
import sys
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

root, portfile, logpath = sys.argv[1], sys.argv[2], sys.argv[3]
log = open(logpath, "a", buffering=1)


class Handler(SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-"):
        log.write(f"{code} {self.command} {self.path}\n")

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/npm/"):
            return self.npm()
        return super().do_GET()

    def npm(self):
        registry = "https://registry.npmjs.org/"
        url = registry + self.path[len("/npm/"):]
        headers = {"User-Agent": "appliance-standins"}
        if self.headers.get("Accept"):
            headers["Accept"] = self.headers["Accept"]
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
                body = r.read()
                ctype = r.headers.get("Content-Type", "application/octet-stream")
                code = r.status
        except urllib.error.HTTPError as e:
            body, ctype, code = e.read(), e.headers.get("Content-Type", "text/plain"), e.code
        if "json" in ctype:
            here = "http://127.0.0.1:%d/npm/" % self.server.server_port
            body = body.replace(registry.encode(), here.encode())
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_port))
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
