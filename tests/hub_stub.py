"""A local stand-in for the Hugging Face Hub at the network boundary.

The rehearsal of the paper configuration (tests/test_rehearsal.py) runs every rule with
``HF_ENDPOINT`` pointing here, so each job's ``datasets.load_dataset(repo, config,
split=..., revision=...)`` goes through the real client code (``huggingface_hub`` file
resolution, ``HfFileSystem`` listings, the ``datasets`` packaged builders reading the
repository card's ``configs``) and only the HTTP answers come from this server. It serves
dataset repositories from a folder (``<root>/<org>/<name>/...``, built by
tests/hub_fixtures.py) at one commit each, the BEIR zip files beside them
(``<root>/beir/<name>.zip``, for ``data.beir_url``), and answers everything else with the
Hub's own 404 codes, so a request the run should not make fails loudly instead of reaching
the internet.

Endpoints (those the clients call): ``GET /api/datasets/{repo}[/revision/{rev}]`` (repository
info), ``GET /api/datasets/{repo}/tree/{rev}[/{path}]`` (listing), ``POST
/api/datasets/{repo}/paths-info/{rev}``, ``HEAD|GET /datasets/{repo}/resolve/{rev}/{path}``
(files, with ``X-Repo-Commit`` and ``ETag``, ranges honoured) and ``GET /beir/{name}.zip``.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.parse
from pathlib import Path

LOG: list[tuple[str, str]] = []


def commit_of(repo: str) -> str:
    """The one commit each stand-in repository is at (40 hex digits)."""
    return hashlib.sha1(repo.encode()).hexdigest()


class Fault:
    """A fault the stand-in Hub injects into the requests whose path contains ``match``, for
    the first ``times`` of them: ``status`` answers ``code`` (503, 429, ...) with a
    ``Retry-After`` of 0; ``drop`` sends the headers and half the body, then closes the
    connection; ``truncate`` sends half the file as if it were all of it; ``corrupt`` sends
    the file with its middle bytes changed. ``times=None``: every matching request."""

    def __init__(self, kind: str, match: str, times: int | None = 1, code: int = 503) -> None:
        assert kind in ("status", "drop", "truncate", "corrupt")
        self.kind, self.match, self.left, self.code = kind, match, times, code
        self.hits = 0
        self.lock = threading.Lock()

    def take(self, path: str) -> bool:
        """Whether this request gets the fault (and count it)."""
        with self.lock:
            if self.match not in path or self.left == 0:
                return False
            if self.left is not None:
                self.left -= 1
            self.hits += 1
            return True


class HubStub:
    """Serve ``root`` as the Hub (``with HubStub(root) as url: ...``), with ``faults``
    (:class:`Fault`) injected into the matching requests."""

    def __init__(self, root: Path, faults: list[Fault] | None = None) -> None:
        self.root = Path(root)
        self.faults = list(faults or [])
        self.requests: list[tuple[str, str]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                stub.handle(self, body=True)

            def do_HEAD(self) -> None:
                stub.handle(self, body=False)

            def do_POST(self) -> None:
                stub.handle(self, body=True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- answers -------------------------------------------------------------------------------
    def send(self, h, code: int, payload: bytes = b"", headers: dict | None = None, body: bool = True) -> None:
        if code in (200, 206) and body:
            fault = next((f for f in self.faults if f.kind != "status" and f.take(h.path)), None)
            if fault is not None and payload:
                return self.send_faulty(h, code, payload, headers or {}, fault.kind)
        h.send_response(code)
        for k, v in {"Content-Length": str(len(payload)), **(headers or {})}.items():
            h.send_header(k, v)
        h.end_headers()
        if body and payload:
            h.wfile.write(payload)

    def send_faulty(self, h, code: int, payload: bytes, headers: dict, kind: str) -> None:
        half = payload[: len(payload) // 2]
        if kind == "corrupt":
            mid = len(payload) // 2
            payload = payload[:mid] + bytes(b ^ 0xFF for b in payload[mid : mid + 64]) + payload[mid + 64 :]
        sent = half if kind == "truncate" else payload
        h.send_response(code)
        for k, v in {**headers, "Content-Length": str(len(sent))}.items():
            h.send_header(k, v)
        h.end_headers()
        if kind == "drop":  # promise the whole file, send half, hang up
            h.wfile.write(half)
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        h.wfile.write(sent)

    def error(self, h, code: int, hub_code: str, message: str, body: bool) -> None:
        payload = json.dumps({"error": message}).encode()
        self.send(h, code, payload, {"X-Error-Code": hub_code, "X-Error-Message": message}, body)

    def repo_dir(self, repo: str) -> Path | None:
        d = self.root / repo
        return d if repo.count("/") == 1 and d.is_dir() else None

    def files(self, repo_dir: Path) -> list[str]:
        return sorted(str(p.relative_to(repo_dir)) for p in repo_dir.rglob("*") if p.is_file())

    def entry(self, repo_dir: Path, rel: str) -> dict:
        p = repo_dir / rel
        if p.is_dir():
            return {"type": "directory", "oid": hashlib.sha1(rel.encode()).hexdigest(), "size": 0, "path": rel}
        data = p.read_bytes()
        return {
            "type": "file",
            "oid": hashlib.sha1(data).hexdigest(),
            "size": len(data),
            "path": rel,
            "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134},
        }

    def handle(self, h, body: bool) -> None:
        url = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(url.path)
        self.requests.append((h.command, path))
        LOG.append((h.command, path))
        status = next((f for f in self.faults if f.kind == "status" and f.take(path)), None)
        if status is not None:
            payload = json.dumps({"error": f"stand-in fault {status.code}"}).encode()
            return self.send(h, status.code, payload, {"Retry-After": "0", "Content-Type": "application/json"}, body)
        if path.startswith("/beir/") and path.endswith(".zip"):
            f = self.root / path.lstrip("/")
            if f.is_file():
                return self.send(h, 200, f.read_bytes(), {"Content-Type": "application/zip"}, body)
            return self.error(h, 404, "EntryNotFound", f"{path} not found", body)
        if path.startswith("/api/datasets/"):
            return self.api(h, path.removeprefix("/api/datasets/"), url.query, body)
        if path.startswith("/datasets/") and "/resolve/" in path:
            repo, rest = path.removeprefix("/datasets/").split("/resolve/", 1)
            rev, _, rel = rest.partition("/")
            return self.resolve(h, repo, rev, rel, body)
        return self.error(h, 404, "RepoNotFound", f"the stand-in Hub does not serve {path}", body)

    def check(self, h, repo: str, rev: str | None, body: bool) -> Path | None:
        d = self.repo_dir(repo)
        if d is None:
            self.error(h, 404, "RepoNotFound", f"Repository {repo} not found", body)
            return None
        if rev not in (None, "main", commit_of(repo)):
            self.error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}", body)
            return None
        return d

    def api(self, h, rest: str, query: str, body: bool) -> None:
        parts = rest.split("/")
        repo = "/".join(parts[:2])
        kind, rev = (parts[2], parts[3]) if len(parts) >= 4 else (None, None)
        if kind == "revision" or kind is None:
            d = self.check(h, repo, rev, body)
            if d is None:
                return None
            info = {
                "_id": commit_of(repo)[:24],
                "id": repo,
                "author": repo.split("/")[0],
                "sha": commit_of(repo),
                "private": False,
                "gated": False,
                "disabled": False,
                "lastModified": "2024-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": f} for f in self.files(d)],
                "tags": [],
                "downloads": 0,
                "likes": 0,
            }
            return self.send(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
        d = self.check(h, repo, rev, body)
        if d is None:
            return None
        if kind == "tree":
            sub = "/".join(parts[4:])
            base = d / sub
            if not base.is_dir():
                return self.error(h, 404, "EntryNotFound", f"{sub} does not exist", body)
            recursive = "recursive=true" in query.lower() or "recursive=1" in query
            items = base.rglob("*") if recursive else base.iterdir()
            out = [self.entry(d, str(p.relative_to(d))) for p in sorted(items)]
            return self.send(h, 200, json.dumps(out).encode(), {"Content-Type": "application/json"}, body)
        if kind == "paths-info":
            n = int(h.headers.get("Content-Length") or 0)
            raw = h.rfile.read(n).decode() if n else ""
            if raw.startswith("{"):
                paths = json.loads(raw).get("paths", [])
            else:
                paths = urllib.parse.parse_qs(raw).get("paths", [])
            out = [self.entry(d, p) for p in paths if (d / p).exists()]
            return self.send(h, 200, json.dumps(out).encode(), {"Content-Type": "application/json"}, body)
        return self.error(h, 404, "EntryNotFound", f"the stand-in Hub has no endpoint {kind}", body)

    def resolve(self, h, repo: str, rev: str, rel: str, body: bool) -> None:
        d = self.check(h, repo, rev, body)
        if d is None:
            return None
        f = d / rel
        if not f.is_file():
            return self.error(h, 404, "EntryNotFound", f"{rel} does not exist at {rev}", body)
        data = f.read_bytes()
        headers = {
            "X-Repo-Commit": commit_of(repo),
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes=") and body:
            start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
            start = int(start_s) if start_s else max(0, len(data) - int(end_s))
            end = min(int(end_s), len(data) - 1) if end_s and start_s else len(data) - 1
            chunk = data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self.send(h, 206, chunk, headers, body)
        return self.send(h, 200, data, headers, body)
