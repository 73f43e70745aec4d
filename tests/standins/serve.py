#!/usr/bin/env python3
"""Serves a directory on 127.0.0.1 for the stand-in harness (tests/standins/README.md).

    serve.py ROOT PORTFILE LOG

Binds a free port on 127.0.0.1, writes it to PORTFILE (atomically, once listening) and logs
every request as "STATUS METHOD PATH" to LOG. Query strings are ignored, so that a key served
for a key server's /pks/lookup?op=get&search=... is the file ROOT/.../pks/lookup.
"""
import functools
import os
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

root, portfile, logpath = sys.argv[1], sys.argv[2], sys.argv[3]
log = open(logpath, "a", buffering=1)


class Handler(SimpleHTTPRequestHandler):
    def log_request(self, code="-", size="-"):
        log.write(f"{code} {self.command} {self.path}\n")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.server_port))
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
