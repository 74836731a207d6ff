"""A loopback stand-in for the Hub endpoints that a push uses (create repo, preupload, commit), recording requests."""

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


class FakeHub:
    """A loopback HTTP server answering the Hub endpoints that a push uses, recording every request.

    Every file is declared "regular" at preupload, so the commit (NDJSON) carries each file's bytes inline (base64).
    """

    def __init__(self, remote_files=(), commit_status=200):
        self.remote_files = list(remote_files)
        self.commit_status = commit_status
        self.requests = []
        self.commits = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._handle(self, "GET")

            def do_POST(self):
                fake._handle(self, "POST")

            def do_HEAD(self):
                fake._handle(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, handler, method):
        parts = urlsplit(handler.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        record = {"method": method, "path": path, "query": query, "auth": handler.headers.get("Authorization"),
                  "body": body}
        self.requests.append(record)
        status, payload = self.route(method, path, body)
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        if status >= 400:
            handler.send_header("X-Error-Message", payload.get("error", "error"))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(data)

    def route(self, method, path, body):
        if method == "POST" and path == "/api/repos/create":
            request = json.loads(body)
            repo_id = f"{request['organization']}/{request['name']}"
            return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id, "id": "0" * 24}
        if method == "POST" and path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/"):].split("/")
            repo_id, action, revision = "/".join(rest[:2]), rest[2], "/".join(rest[3:])
            if method == "POST" and action == "branch":
                return 200, {}
            if method == "GET" and action == "tree":
                return 200, [{"type": "file", "path": p, "oid": "0" * 40, "size": 1} for p in self.remote_files]
            if method == "POST" and action == "preupload":
                files = json.loads(body)["files"]
                return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                       for f in files]}
            if method == "POST" and action == "commit":
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                self.commits.append({"repo_id": repo_id, "revision": revision, "lines": lines})
                if self.commit_status != 200:
                    return self.commit_status, {"error": "Internal Error - the fake Hub fails this commit"}
                oid = hashlib.sha1(body).hexdigest()
                return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                             "pullRequestUrl": None}
        return 404, {"error": f"Not found: {method} {path}"}

    def committed_files(self, commit) -> dict[str, bytes]:
        files = {}
        for line in commit["lines"]:
            assert line["key"] in ("header", "file", "deletedFile"), line["key"]  # nothing else (no lfsFile)
            if line["key"] == "file":
                assert line["value"]["encoding"] == "base64"
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        return files
