"""A local stand-in for GitHub's REST API that checks every request against GitHub's own OpenAPI description.

GitHub cannot be reached from the test machines, so bgdeploy's GitHub client is tested against this server. Each
request is matched to an operation of ``@octokit/openapi``'s ``generated/api.github.com.json`` (installed by
``scripts/setup-node``; ``BGDEPLOY_GITHUB_OPENAPI`` names another file) and checked: path and query parameters
(types, enums, unknown names), the ``Authorization`` header, ``User-Agent``, ``X-GitHub-Api-Version`` and the JSON
body against the operation's request schema. A request that does not conform is answered as GitHub would (404,
401, 400 or 422 with a JSON ``message``) and a description is appended to ``stub.errors``: tests assert
``stub.errors == []``.

Conforming requests are answered with the operation's own example response from the description, except the ones
bgdeploy depends on, which are stateful (issue comments with pagination, pull requests of a commit, deployments
and deployment statuses). Faults (5xx, 403, rate limits) are injected with ``stub.fail``.

    with GitHubStub(prefix="/api/v3", token="ghs_test") as gh:
        env = {"GITHUB_API_URL": gh.url, "GITHUB_TOKEN": "ghs_test"}
        gh.seed_comments("octo", "app", 7, ["old"] * 250)
        gh.fail("POST", r"/deployments$", 502, times=2)
        ...  # run bgdeploy
        assert gh.errors == []
"""

from __future__ import annotations

import copy
import hashlib
import http
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import jsonschema.validators
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

REPO_ROOT = Path(__file__).resolve().parents[2]
SPEC_ENV = "BGDEPLOY_GITHUB_OPENAPI"
DEFAULT_SPEC = REPO_ROOT / ".cache/node/node_modules/@octokit/openapi/generated/api.github.com.json"
DOC_URI = "urn:bgdeploy:github-openapi"
BASE_API_VERSION = "2022-11-28"  # the version the description describes; later ones only patch it
DOCS = "https://docs.github.com/rest"
SECONDARY_RATE_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to "
    "GitHub Support for help, please include the request ID 0400:3C8D:1F8A2B:3F0E1C:65A1B2C3."
)
SECONDARY_RATE_LIMIT_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api"
    "#about-secondary-rate-limits"
)
NOT_ACCESSIBLE_MESSAGE = "Resource not accessible by integration"
COMMENT_BODY_LIMIT = 65536  # GitHub: "Body is too long (maximum is 65536 characters)"
STATUS_DESCRIPTION_LIMIT = 140  # documented limit of a deployment status description

Json = Any


def openapi_path() -> Path:
    """Where the OpenAPI description is read from: $BGDEPLOY_GITHUB_OPENAPI, else .cache/node (setup-node)."""
    return Path(os.environ.get(SPEC_ENV) or DEFAULT_SPEC)


def openapi_available() -> bool:
    return openapi_path().is_file()


class OpenAPIMissing(RuntimeError):
    """The OpenAPI description is not installed: run scripts/setup-node."""


# ---------------------------------------------------------------------------------------------------------------
# The description: routes, parameters, schemas, examples
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    location: str  # "path" | "query" | "header" | "cookie"
    required: bool
    schema: Mapping[str, Json]
    schema_pointer: str  # JSON pointer into the document, for validation with $refs resolved
    multi_segment: bool


@dataclass(frozen=True)
class Operation:
    method: str  # upper case
    template: str  # e.g. /repos/{owner}/{repo}/issues/{issue_number}/comments
    operation_id: str
    pointer: str  # JSON pointer of the operation object
    params: Mapping[tuple[str, str], Param]  # (location, name) -> Param
    body_required: bool
    body_content: Mapping[str, str]  # media type -> JSON pointer of its schema; empty: the operation takes no body


@dataclass(frozen=True)
class Route:
    template: str
    regex: re.Pattern[str]
    group_names: Mapping[str, str]  # regex group -> parameter name
    specificity: tuple[int, int]  # (literal segments, -multi-segment parameters): higher wins
    operations: Mapping[str, Operation]


def _escape_pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _openapi30_validator_class() -> type[Validator]:
    """Draft 2020-12 with OpenAPI 3.0's ``nullable: true`` honoured (a null instance passes every keyword)."""
    base: Any = jsonschema.validators.validator_for({"$schema": "https://json-schema.org/draft/2020-12/schema"})

    def tolerate_null(keyword: str, check: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]) -> Any:
            if instance is None:
                if schema.get("nullable") is True:
                    return None
                if keyword == "oneOf" and any(isinstance(s, dict) and s.get("nullable") is True for s in value):
                    return None  # several nullable branches all accept null: OpenAPI 3.0 means "any of"
            return check(validator, value, instance, schema)

        return wrapped

    keywords = {name: tolerate_null(name, check) for name, check in base.VALIDATORS.items()}
    cls: type[Validator] = jsonschema.validators.extend(base, keywords)  # type: ignore[no-untyped-call]
    return cls


class Description:
    """GitHub's OpenAPI description, parsed once, with a route table and cached schema validators."""

    def __init__(self, path: Path) -> None:
        started = time.perf_counter()
        self.path = path
        with path.open("rb") as f:
            self.doc: dict[str, Json] = json.load(f)
        self.parse_seconds = time.perf_counter() - started
        self._routes: dict[str, list[Route]] = {}
        self.operations: dict[str, Operation] = {}
        self.api_versions: set[str] = {BASE_API_VERSION}
        for template, item in self.doc["paths"].items():
            self._add_route(template, item)
        self.registry: Registry[Any] = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(self.doc))
        self._validator_class = _openapi30_validator_class()
        self._validators: dict[str, Validator] = {}
        self._lock = threading.Lock()
        self.load_seconds = time.perf_counter() - started

    # -- structure -------------------------------------------------------------------------------------------

    def deref(self, obj: Json) -> tuple[Json, str | None]:
        """Follows local $refs; returns the target and its pointer (None when obj was not a $ref)."""
        pointer = None
        while isinstance(obj, dict) and isinstance(obj.get("$ref"), str) and obj["$ref"].startswith("#/"):
            pointer = obj["$ref"][1:]
            obj = self.at(pointer)
        return obj, pointer

    def at(self, pointer: str) -> Json:
        node: Json = self.doc
        for part in pointer.split("/")[1:]:
            key = part.replace("~1", "/").replace("~0", "~")
            node = node[int(key)] if isinstance(node, list) else node[key]
        return node

    def _params(self, raw: list[Json], base_pointer: str) -> dict[tuple[str, str], Param]:
        params: dict[tuple[str, str], Param] = {}
        for i, entry in enumerate(raw):
            param, pointer = self.deref(entry)
            pointer = pointer or f"{base_pointer}/{i}"
            params[(param["in"], param["name"])] = Param(
                name=param["name"],
                location=param["in"],
                required=bool(param.get("required", False)),
                schema=self.deref(param.get("schema", {}))[0],  # resolved: its "type" decides the coercion
                schema_pointer=pointer + "/schema",
                multi_segment=bool(param.get("x-multi-segment", False)),
            )
        return params

    def _add_route(self, template: str, item: Mapping[str, Json]) -> None:
        item_pointer = _escape_pointer("paths", template)
        shared = self._params(item.get("parameters", []), item_pointer + "/parameters")
        operations: dict[str, Operation] = {}
        multi: set[str] = set()
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete", "options", "head", "patch", "trace"):
                continue
            op_pointer = f"{item_pointer}/{method}"
            params = dict(shared)
            params.update(self._params(op.get("parameters", []), op_pointer + "/parameters"))
            multi.update(p.name for p in params.values() if p.location == "path" and p.multi_segment)
            body, body_pointer = self.deref(op.get("requestBody", {}))
            body_pointer = body_pointer or op_pointer + "/requestBody"
            content = {
                media: f"{body_pointer}/content/{_escape_pointer(media)[1:]}/schema"
                for media, spec in body.get("content", {}).items()
                if "schema" in spec
            }
            operation = Operation(
                method=method.upper(),
                template=template,
                operation_id=op.get("operationId", f"{method} {template}"),
                pointer=op_pointer,
                params=params,
                body_required=bool(body.get("required", False)),
                body_content=content,
            )
            operations[operation.method] = operation
            self.operations[operation.operation_id] = operation
            for change in op.get("x-github-breaking-changes", []):
                if isinstance(change, dict) and isinstance(change.get("version"), str):
                    self.api_versions.add(change["version"])
        if not operations:
            return
        pattern = ""
        groups: dict[str, str] = {}
        literal_segments = 0
        for segment in template.split("/")[1:]:
            pattern += "/"
            if "{" not in segment:
                literal_segments += 1
            for i, piece in enumerate(re.split(r"\{([^}]+)\}", segment)):
                if i % 2 == 0:
                    pattern += re.escape(piece)
                else:
                    group = f"p{len(groups)}"
                    groups[group] = piece
                    pattern += f"(?P<{group}>.+)" if piece in multi else f"(?P<{group}>[^/]+)"
        route = Route(
            template=template,
            regex=re.compile(pattern if pattern else "/"),
            group_names=groups,
            specificity=(literal_segments, -sum(1 for name in groups.values() if name in multi)),
            operations=operations,
        )
        first = template.split("/")[1] if template != "/" else ""
        self._routes.setdefault(first, []).append(route)

    def match(self, path: str, method: str | None = None) -> tuple[Route, dict[str, str]] | None:
        """The most specific route whose template matches the (still percent-encoded) path, preferring one that
        has ``method`` (GitHub has a few templates of the same shape, e.g. .../attestations/{subject_digest} for
        GET and .../attestations/{attestation_id} for DELETE)."""
        first = path.split("/")[1] if path.count("/") >= 1 else ""
        best: tuple[Route, dict[str, str]] | None = None
        best_key: tuple[bool, tuple[int, int]] = (False, (-1, 0))
        for route in self._routes.get(first, []):
            m = route.regex.fullmatch(path)
            if m is None:
                continue
            key = (method is not None and method in route.operations, route.specificity)
            if best is None or key > best_key:
                best = (route, {route.group_names[g]: unquote(v) for g, v in m.groupdict().items()})
                best_key = key
        return best

    # -- schemas and examples ----------------------------------------------------------------------------------

    def validator(self, pointer: str) -> Validator:
        with self._lock:
            found = self._validators.get(pointer)
            if found is None:
                ref = f"{DOC_URI}#{quote(pointer, safe='/~')}"
                found = self._validator_class({"$ref": ref}, registry=self.registry)
                self._validators[pointer] = found
            return found

    def schema_errors(self, pointer: str, instance: Json, where: str) -> list[str]:
        errors = []
        for error in sorted(self.validator(pointer).iter_errors(instance), key=lambda e: list(e.absolute_path)):
            location = where + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
            errors.append(f"{location}: {error.message}")
        return errors

    def response(self, op: Operation, status: int | None = None) -> tuple[int, Json, str | None]:
        """(status, example body or None, pointer of the response schema or None) of the first 2xx response
        (or of ``status``)."""
        responses = self.at(op.pointer)["responses"]
        codes = [c for c in responses if (str(status) == c if status else c.startswith("2"))]
        if not codes:
            return (status or 200), None, None
        code = codes[0]
        resp, resp_pointer = self.deref(responses[code])
        resp_pointer = resp_pointer or f"{op.pointer}/responses/{code}"
        media = resp.get("content", {}).get("application/json")
        if media is None:
            return int(code), None, None
        schema_pointer = f"{resp_pointer}/content/application~1json/schema" if "schema" in media else None
        body: Json = None
        if media.get("examples"):
            example, _ = self.deref(next(iter(media["examples"].values())))
            body = example.get("value")
        elif "example" in media:
            body = media["example"]
        elif "schema" in media:
            schema, _ = self.deref(media["schema"])
            body = [] if schema.get("type") == "array" else {}
        return int(code), copy.deepcopy(body), schema_pointer


_DESCRIPTIONS: dict[Path, Description] = {}
_DESCRIPTIONS_LOCK = threading.Lock()


def load_description(path: Path | None = None) -> Description:
    """Parses the description once per process (per path) and builds the route table."""
    path = (path or openapi_path()).resolve()
    with _DESCRIPTIONS_LOCK:
        found = _DESCRIPTIONS.get(path)
        if found is None:
            if not path.is_file():
                raise OpenAPIMissing(f"{path} not found: run scripts/setup-node (or set {SPEC_ENV})")
            found = Description(path)
            _DESCRIPTIONS[path] = found
        return found


# ---------------------------------------------------------------------------------------------------------------
# Requests, faults, the server
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent, percent-encoded, with the stub's prefix, without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: str

    def text(self) -> str:
        """Everything the client sent, as one string (for "no secret in any request" assertions)."""
        headers = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}?{urlencode(self.query, doseq=True)}\n{headers}\n\n{self.body}"


@dataclass
class Fault:
    method: str
    path_regex: re.Pattern[str]
    status: int
    remaining: int | None  # None: every time
    headers: dict[str, str]
    body: Json
    hits: int = 0


@dataclass
class _Answer:
    status: int
    body: Json = None  # JSON-encoded unless str/bytes; None with 204 or HEAD: no body
    headers: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    """A request that GitHub would refuse: answered with status and message, recorded in stub.errors."""

    def __init__(self, status: int, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


def _default_fault_message(status: int) -> str:
    known = {
        401: "Bad credentials",
        403: NOT_ACCESSIBLE_MESSAGE,
        404: "Not Found",
        409: "Conflict",
        422: "Validation Failed",
        429: SECONDARY_RATE_LIMIT_MESSAGE,
        500: "Server Error",
        502: "Server Error",
        503: "Service Unavailable",
        504: "We couldn't respond to your request in time. Sorry about that. Please try resubmitting your request "
        "and contact us if the problem persists.",
    }
    if status in known:
        return known[status]
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _coerce(value: str, schema: Mapping[str, Json]) -> tuple[Json, str | None]:
    """A query/path string as the type its schema declares; (value, problem)."""
    kind = schema.get("type")
    if kind == "integer":
        if re.fullmatch(r"-?[0-9]+", value):
            return int(value), None
        return value, f"{value!r} is not an integer"
    if kind == "number":
        try:
            return float(value), None
        except ValueError:
            return value, f"{value!r} is not a number"
    if kind == "boolean":
        if value in ("true", "false"):
            return value == "true", None
        return value, f"{value!r} is not a boolean (true or false)"
    return value, None


class GitHubStub:
    """GitHub's REST API on 127.0.0.1 (random port), checked against the OpenAPI description.

    ``prefix``: a path prefix such as ``/api/v3`` (GitHub Enterprise Server style); ``url`` includes it.
    ``token``: when set, the only token accepted (else any ``Bearer``/``token`` credential is).
    ``require_auth``: a request without ``Authorization`` is refused with 401 and recorded as an error.
    ``login``: the user that comments, deployments and statuses created through the stub belong to.
    ``check_responses``: the stub validates its own stateful answers against the response schemas (stub bugs
    land in ``errors`` too, prefixed "stub:").
    """

    def __init__(
        self,
        *,
        prefix: str = "",
        token: str | None = None,
        require_auth: bool = True,
        login: str = "github-actions[bot]",
        openapi: Path | None = None,
        check_responses: bool = True,
    ) -> None:
        self.description = load_description(openapi)
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.token = token
        self.require_auth = require_auth
        self.login = login
        self.check_responses = check_responses
        self.errors: list[str] = []
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._lock = threading.RLock()
        self._next_id = 1000
        self._clock = 1_704_067_200  # 2024-01-01T00:00:00Z, one second per created object
        self._comments: dict[tuple[str, str, int], list[dict[str, Json]]] = {}
        self._comment_index: dict[int, tuple[str, str, int]] = {}
        self._commit_pulls: dict[str, list[dict[str, Json]]] = {}
        self._ref_shas: dict[str, str] = {}
        self._deployments: dict[int, dict[str, Json]] = {}  # id -> {"repo":(o,r), "object":…, "request":…}
        self._statuses: dict[int, list[dict[str, Json]]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> GitHubStub:
        if self._server is not None:
            return self
        stub = self

        class Handler(_Handler):
            owner = stub

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.origin = f"http://127.0.0.1:{server.server_address[1]}"
        self.url = self.origin + self.prefix
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="github-stub", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GitHubStub:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- set-up and assertions -----------------------------------------------------------------------------

    def seed_comments(
        self, owner: str, repo: str, number: int, bodies: list[str], *, login: str | None = None
    ) -> list[dict[str, Json]]:
        """Adds comments to issue/PR ``number`` as if they had been posted (by ``login``, default the stub's)."""
        with self._lock:
            return [self._new_comment(owner, repo, number, body, login or self.login) for body in bodies]

    def comments(self, owner: str, repo: str, number: int) -> list[dict[str, Json]]:
        with self._lock:
            return copy.deepcopy(self._comments.get(self._issue_key(owner, repo, number), []))

    def set_commit_pulls(self, sha: str, numbers: list[int], *, merged: bool = True) -> None:
        """``GET /repos/{o}/{r}/commits/{sha}/pulls`` answers these PRs (closed and merged unless merged=False)."""
        with self._lock:
            self._commit_pulls[sha] = [{"number": n, "merged": merged} for n in numbers]

    def set_ref_sha(self, ref: str, sha: str) -> None:
        """The commit a ref (branch, tag) resolves to when a deployment is created for it."""
        with self._lock:
            self._ref_shas[ref] = sha

    def deployments(self) -> list[dict[str, Json]]:
        """Deployments created through the stub, oldest first: GitHub's answer plus ``request`` (the JSON body
        that was sent, e.g. to check ``auto_merge`` and ``required_contexts``)."""
        with self._lock:
            return [
                dict(copy.deepcopy(d["object"]), request=copy.deepcopy(d["request"]))
                for _, d in sorted(self._deployments.items())
            ]

    def statuses(self, deployment_id: int) -> list[dict[str, Json]]:
        """Statuses of a deployment, oldest first, each with ``request`` (the JSON body sent)."""
        with self._lock:
            return [
                dict(copy.deepcopy(s["object"]), request=copy.deepcopy(s["request"]))
                for s in self._statuses.get(deployment_id, [])
            ]

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int | None = 1,
        headers: Mapping[str, str] | None = None,
        body: Json = None,
    ) -> Fault:
        """The next ``times`` conforming requests (None: all) whose method matches (``*``: any) and whose path
        after the prefix matches ``path_regex`` (re.search) get ``status`` instead of the normal answer. ``body``:
        a dict/list (JSON), a str (sent as text/html) or None for GitHub's JSON message for that status."""
        fault = Fault(
            method=method.upper(),
            path_regex=re.compile(path_regex),
            status=status,
            remaining=times,
            headers=dict(headers or {}),
            body=body if body is not None else {"message": _default_fault_message(status), "documentation_url": DOCS},
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def fail_secondary_rate_limit(
        self, method: str, path_regex: str, *, times: int | None = 1, retry_after: int = 1, status: int = 403
    ) -> Fault:
        """GitHub's secondary rate limit answer: 403 (or 429) with ``retry-after`` and its message."""
        body = {"message": SECONDARY_RATE_LIMIT_MESSAGE, "documentation_url": SECONDARY_RATE_LIMIT_DOCS}
        return self.fail(method, path_regex, status, times, {"retry-after": str(retry_after)}, body)

    def fail_rate_limit(self, method: str, path_regex: str, *, times: int | None = 1, reset_in: int = 1) -> Fault:
        """GitHub's primary rate limit answer: 403, ``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset``."""
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": str(int(time.time()) + reset_in),
            "x-ratelimit-resource": "core",
        }
        body = {
            "message": "API rate limit exceeded for installation ID 12345678.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        }
        return self.fail(method, path_regex, 403, times, headers, body)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def transcript(self) -> str:
        """Every request as text: ``assert secret not in stub.transcript()``."""
        with self._lock:
            return "\n\n".join(r.text() for r in self.requests)

    # -- request handling ------------------------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: dict[str, str], raw_body: bytes) -> _Answer:
        split = urlsplit(target)
        query_pairs = parse_qsl(split.query, keep_blank_values=True)
        query: dict[str, list[str]] = {}
        for k, v in query_pairs:
            query.setdefault(k, []).append(v)
        body_text = raw_body.decode("utf-8", errors="replace")
        with self._lock:
            self.requests.append(RecordedRequest(method, split.path, query, dict(headers), body_text))
        where = f"{method} {split.path}"
        try:
            op, path_params, query_values, body = self._check(method, split.path, query, headers, raw_body)
            api_path = split.path[len(self.prefix) :]
            fault = self._take_fault(method, api_path)
            if fault is not None:
                body_out = fault.body
                fault_headers = dict(fault.headers)
                if isinstance(body_out, str):
                    fault_headers.setdefault("content-type", "text/html; charset=utf-8")
                return _Answer(fault.status, body_out, fault_headers)
            answer = self._answer(op, path_params, query_values, body, split.path, query_pairs)
        except _Refused as refused:
            with self._lock:
                self.errors.append(f"{where}: {refused.message}" + "".join(f"\n  {d}" for d in refused.details))
            payload: dict[str, Json] = {
                "message": refused.message,
                "documentation_url": DOCS,
                "status": str(refused.status),
            }
            if refused.details:
                payload["errors"] = [{"code": "invalid", "message": d} for d in refused.details]
            return _Answer(refused.status, payload)
        return answer

    def _take_fault(self, method: str, api_path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method not in ("*", method) or not fault.path_regex.search(api_path):
                    continue
                if fault.remaining is not None:
                    if fault.remaining <= 0:
                        continue
                    fault.remaining -= 1
                fault.hits += 1
                return fault
        return None

    def _check(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], raw_body: bytes
    ) -> tuple[Operation, dict[str, Json], dict[str, Json], Json]:
        if self.prefix and not (path == self.prefix or path.startswith(self.prefix + "/")):
            raise _Refused(404, "Not Found", [f"path is outside the API prefix {self.prefix!r}"])
        api_path = path[len(self.prefix) :] or "/"
        if len(api_path) > 1 and api_path.endswith("/"):
            raise _Refused(404, "Not Found", ["trailing slash: no GitHub operation has one"])
        found = self.description.match(api_path, method)
        if found is None:
            raise _Refused(404, "Not Found", [f"no operation in GitHub's description matches {api_path}"])
        route, raw_params = found
        op = route.operations.get(method)
        if op is None:
            raise _Refused(404, "Not Found", [f"{route.template} has no {method} (only {', '.join(route.operations)})"])

        auth = headers.get("authorization")
        if auth is None:
            if self.require_auth:
                raise _Refused(401, "Requires authentication", ["no Authorization header"])
        else:
            m = re.fullmatch(r"(?i:(bearer|token))\s+(\S+)", auth.strip())
            if m is None:
                raise _Refused(401, "Bad credentials", ["Authorization is not 'Bearer TOKEN' or 'token TOKEN'"])
            if self.token is not None and m.group(2) != self.token:
                raise _Refused(401, "Bad credentials", ["the token is not the one the stub was given"])

        problems: list[str] = []
        if not headers.get("user-agent"):
            problems.append("no User-Agent header (GitHub refuses such requests with 403)")
        accept = headers.get("accept")
        if accept is not None and "json" not in accept and "*/*" not in accept and "vnd.github" not in accept:
            problems.append(f"Accept {accept!r} asks for no JSON")
        version = headers.get("x-github-api-version")
        if version is not None and version not in self.description.api_versions:
            raise _Refused(
                400,
                f"API version {version} is not supported.",
                [f"X-GitHub-Api-Version {version!r} is not one of {sorted(self.description.api_versions)}"],
            )

        path_values: dict[str, Json] = {}
        for name, raw in raw_params.items():
            param = op.params.get(("path", name))
            if param is None:
                problems.append(f"path parameter {name} is not declared by {op.operation_id}")
                continue
            value, problem = _coerce(raw, param.schema)
            if problem:
                problems.append(f"path parameter {name}: {problem}")
                continue
            path_values[name] = value
            problems += self.description.schema_errors(param.schema_pointer, value, f"path parameter {name}")

        query_values: dict[str, Json] = {}
        for name, values in query.items():
            param = op.params.get(("query", name))
            if param is None:
                declared = sorted(n for (loc, n) in op.params if loc == "query")
                problems.append(f"unknown query parameter {name!r} for {op.operation_id} (declared: {declared})")
                continue
            if param.schema.get("type") == "array":
                items = [v for value in values for v in value.split(",")]
                converted = [_coerce(v, param.schema.get("items", {})) for v in items]
                bad = [p for _, p in converted if p]
                if bad:
                    problems += [f"query parameter {name}: {p}" for p in bad]
                    continue
                value_out: Json = [v for v, _ in converted]
            else:
                if len(values) > 1:
                    problems.append(f"query parameter {name} given {len(values)} times")
                    continue
                value_out, problem = _coerce(values[0], param.schema)
                if problem:
                    problems.append(f"query parameter {name}: {problem}")
                    continue
            query_values[name] = value_out
            problems += self.description.schema_errors(param.schema_pointer, value_out, f"query parameter {name}")
        for (loc, name), param in op.params.items():
            if loc == "query" and param.required and name not in query:
                problems.append(f"required query parameter {name} is missing")

        body: Json = None
        if raw_body:
            if not op.body_content:
                problems.append(f"{op.operation_id} takes no request body, but {len(raw_body)} bytes were sent")
            else:
                media = headers.get("content-type", "").split(";")[0].strip().lower()
                if media not in op.body_content:
                    problems.append(f"Content-Type {media or '(none)'!r} is not one of {sorted(op.body_content)}")
                elif media == "application/json" or media.endswith("+json"):
                    try:
                        body = json.loads(raw_body)
                    except ValueError as exc:
                        raise _Refused(400, "Problems parsing JSON", [f"request body is not JSON: {exc}"]) from exc
                    problems += self.description.schema_errors(op.body_content[media], body, "body")
        elif op.body_required:
            problems.append(f"{op.operation_id} requires a request body")
        if not problems:
            problems += self._github_rules(op, body)
        if problems:
            raise _Refused(422, "Invalid request.", problems)
        return op, path_values, query_values, body

    @staticmethod
    def _github_rules(op: Operation, body: Json) -> list[str]:
        """Limits GitHub enforces that the description only states in prose."""
        problems = []
        if op.operation_id in ("issues/create-comment", "issues/update-comment") and isinstance(body, dict):
            text = body.get("body")
            if isinstance(text, str) and len(text) > COMMENT_BODY_LIMIT:
                problems.append(f"body is too long ({len(text)} characters; maximum is {COMMENT_BODY_LIMIT})")
        if op.operation_id == "repos/create-deployment-status" and isinstance(body, dict):
            text = body.get("description")
            if isinstance(text, str) and len(text) > STATUS_DESCRIPTION_LIMIT:
                problems.append(
                    f"description is too long ({len(text)} characters; maximum is {STATUS_DESCRIPTION_LIMIT})"
                )
        return problems

    # -- answers ---------------------------------------------------------------------------------------------

    def _answer(
        self,
        op: Operation,
        path: dict[str, Json],
        query: dict[str, Json],
        body: Json,
        raw_path: str,
        query_pairs: list[tuple[str, str]],
    ) -> _Answer:
        handler = _STATEFUL.get(op.operation_id)
        if handler is None:
            status, example, _ = self.description.response(op)
            return _Answer(status, example)
        with self._lock:
            answer = handler(self, Call(op, path, query, body, raw_path, query_pairs))
        if self.check_responses and 200 <= answer.status < 300 and answer.body is not None:
            _, _, schema_pointer = self.description.response(op, answer.status)
            if schema_pointer:
                for problem in self.description.schema_errors(schema_pointer, answer.body, "response"):
                    with self._lock:
                        self.errors.append(f"stub: {op.method} {raw_path}: answer breaks its schema: {problem}")
        return answer

    def _tick(self) -> str:
        self._clock += 1
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @staticmethod
    def _issue_key(owner: str, repo: str, number: int) -> tuple[str, str, int]:
        return owner.lower(), repo.lower(), int(number)

    def _user(self, login: str | None = None) -> dict[str, Json]:
        _, example, _ = self.description.response(self.description.operations["issues/get-comment"])
        user: dict[str, Json] = example["user"]
        login = login or self.login
        bot = login.endswith("[bot]")
        user_id = 41898282 if login == "github-actions[bot]" else int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)
        api = f"{self.url}/users/{quote(login)}"
        user.update(
            login=login,
            id=user_id,
            type="Bot" if bot else "User",
            url=api,
            html_url=f"https://github.com/apps/{login[:-5]}" if bot else f"https://github.com/{login}",
        )
        for key in (
            "followers_url",
            "following_url",
            "gists_url",
            "starred_url",
            "subscriptions_url",
            "organizations_url",
            "repos_url",
            "events_url",
            "received_events_url",
        ):
            if isinstance(user.get(key), str):
                user[key] = api + user[key].split("/users/octocat", 1)[-1]
        return user

    def _new_comment(self, owner: str, repo: str, number: int, text: str, login: str) -> dict[str, Json]:
        _, comment, _ = self.description.response(self.description.operations["issues/get-comment"])
        comment_id = self._new_id()
        now = self._tick()
        comment.update(
            id=comment_id,
            node_id=f"IC_stub{comment_id}",
            url=f"{self.url}/repos/{owner}/{repo}/issues/comments/{comment_id}",
            html_url=f"https://github.com/{owner}/{repo}/issues/{number}#issuecomment-{comment_id}",
            issue_url=f"{self.url}/repos/{owner}/{repo}/issues/{number}",
            body=text,
            user=self._user(login),
            created_at=now,
            updated_at=now,
            author_association="NONE" if login.endswith("[bot]") else "MEMBER",
        )
        key = self._issue_key(owner, repo, number)
        self._comments.setdefault(key, []).append(comment)
        self._comment_index[comment_id] = key
        created: dict[str, Json] = comment
        return created

    def _find_comment(self, owner: str, repo: str, comment_id: int) -> dict[str, Json]:
        key = self._comment_index.get(comment_id)
        if key is None or key[:2] != (owner.lower(), repo.lower()):
            raise _NotFound
        return next(c for c in self._comments[key] if c["id"] == comment_id)

    def _page(
        self, items: list[Json], query: dict[str, Json], raw_path: str, query_pairs: list[tuple[str, str]]
    ) -> _Answer:
        """One page of ``items`` (per_page default 30, at most 100) with GitHub's RFC 8288 Link header."""
        per_page = max(1, min(100, int(query.get("per_page", 30))))
        page = max(1, int(query.get("page", 1)))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers: dict[str, str] = {}
        if last > 1:
            kept = [(k, v) for k, v in query_pairs if k != "page"]

            def link(n: int, rel: str) -> str:
                return f'<{self.origin}{raw_path}?{urlencode([*kept, ("page", str(n))])}>; rel="{rel}"'

            links = []
            if page > 1:
                links.append(link(min(page - 1, last), "prev"))
            if page < last:
                links += [link(page + 1, "next"), link(last, "last")]
            if page > 1:
                links.append(link(1, "first"))
            headers["link"] = ", ".join(links)
        return _Answer(200, copy.deepcopy(chunk), headers)

    def _repo_url(self, path: dict[str, Json]) -> str:
        return f"{self.url}/repos/{path['owner']}/{path['repo']}"

    def _deployment(self, path: dict[str, Json]) -> dict[str, Json]:
        found = self._deployments.get(int(path["deployment_id"]))
        if found is None or found["repo"] != (str(path["owner"]).lower(), str(path["repo"]).lower()):
            raise _NotFound
        return found


class _NotFound(Exception):
    pass


@dataclass(frozen=True)
class Call:
    """One checked request, as a stateful handler sees it."""

    op: Operation
    path: dict[str, Json]
    query: dict[str, Json]
    body: Json
    raw_path: str
    query_pairs: list[tuple[str, str]]


_Handler_t = Callable[[GitHubStub, Call], _Answer]
_STATEFUL: dict[str, _Handler_t] = {}


def _stateful(operation_id: str) -> Callable[[_Handler_t], _Handler_t]:
    def register(fn: _Handler_t) -> _Handler_t:
        def guarded(stub: GitHubStub, call: Call) -> _Answer:
            try:
                return fn(stub, call)
            except _NotFound:
                return _Answer(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})

        _STATEFUL[operation_id] = guarded
        return fn

    return register


@_stateful("issues/list-comments")
def _list_comments(stub: GitHubStub, call: Call) -> _Answer:
    items = stub._comments.get(stub._issue_key(call.path["owner"], call.path["repo"], call.path["issue_number"]), [])
    since = call.query.get("since")
    if isinstance(since, str):
        items = [c for c in items if c["updated_at"] >= since]
    return stub._page(items, call.query, call.raw_path, call.query_pairs)


@_stateful("issues/create-comment")
def _create_comment(stub: GitHubStub, call: Call) -> _Answer:
    comment = stub._new_comment(
        call.path["owner"], call.path["repo"], call.path["issue_number"], call.body["body"], stub.login
    )
    return _Answer(201, copy.deepcopy(comment), {"location": comment["url"]})


@_stateful("issues/get-comment")
def _get_comment(stub: GitHubStub, call: Call) -> _Answer:
    return _Answer(
        200, copy.deepcopy(stub._find_comment(call.path["owner"], call.path["repo"], call.path["comment_id"]))
    )


@_stateful("issues/update-comment")
def _update_comment(stub: GitHubStub, call: Call) -> _Answer:
    comment = stub._find_comment(call.path["owner"], call.path["repo"], call.path["comment_id"])
    comment["body"] = call.body["body"]
    comment["updated_at"] = stub._tick()
    return _Answer(200, copy.deepcopy(comment))


@_stateful("issues/delete-comment")
def _delete_comment(stub: GitHubStub, call: Call) -> _Answer:
    comment = stub._find_comment(call.path["owner"], call.path["repo"], call.path["comment_id"])
    key = stub._comment_index.pop(comment["id"])
    stub._comments[key].remove(comment)
    return _Answer(204)


@_stateful("repos/list-pull-requests-associated-with-commit")
def _commit_pulls(stub: GitHubStub, call: Call) -> _Answer:
    _, examples, _ = stub.description.response(call.op)
    owner, repo, sha = call.path["owner"], call.path["repo"], call.path["commit_sha"]
    pulls = []
    for wanted in stub._commit_pulls.get(sha, []):
        pr: dict[str, Json] = copy.deepcopy(examples[0])
        n = wanted["number"]
        api = f"{stub.url}/repos/{owner}/{repo}"
        merged_at = "2024-01-01T00:00:00Z" if wanted["merged"] else None
        pr.update(
            id=100_000 + n,
            number=n,
            state="closed" if wanted["merged"] else "open",
            merged_at=merged_at,
            closed_at=merged_at,
            merge_commit_sha=sha if wanted["merged"] else pr.get("merge_commit_sha"),
            url=f"{api}/pulls/{n}",
            html_url=f"https://github.com/{owner}/{repo}/pull/{n}",
            issue_url=f"{api}/issues/{n}",
            comments_url=f"{api}/issues/{n}/comments",
            commits_url=f"{api}/pulls/{n}/commits",
            review_comments_url=f"{api}/pulls/{n}/comments",
            statuses_url=f"{api}/statuses/{sha}",
            diff_url=f"https://github.com/{owner}/{repo}/pull/{n}.diff",
            patch_url=f"https://github.com/{owner}/{repo}/pull/{n}.patch",
            requested_teams=[],  # the description's example team lacks "type", which its own schema requires
        )
        pulls.append(pr)
    return stub._page(pulls, call.query, call.raw_path, call.query_pairs)


@_stateful("repos/create-deployment")
def _create_deployment(stub: GitHubStub, call: Call) -> _Answer:
    _, deployment, _ = stub.description.response(call.op, 201)
    ref = call.body["ref"]
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        sha = ref
    else:
        sha = (
            stub._ref_shas.get(ref)
            or hashlib.sha1(f"{call.path['owner']}/{call.path['repo']}@{ref}".encode()).hexdigest()
        )
    environment = call.body.get("environment", "production")
    deployment_id = stub._new_id()
    now = stub._tick()
    url = f"{stub._repo_url(call.path)}/deployments/{deployment_id}"
    deployment.update(
        id=deployment_id,
        node_id=f"DE_stub{deployment_id}",
        url=url,
        sha=sha,
        ref=ref,
        task=call.body.get("task", "deploy"),
        payload=call.body.get("payload", {}),
        original_environment=environment,
        environment=environment,
        description=call.body.get("description"),
        creator=stub._user(),
        created_at=now,
        updated_at=now,
        statuses_url=f"{url}/statuses",
        repository_url=stub._repo_url(call.path),
        transient_environment=call.body.get("transient_environment", False),
        production_environment=call.body.get("production_environment", environment == "production"),
    )
    stub._deployments[deployment_id] = {
        "repo": (str(call.path["owner"]).lower(), str(call.path["repo"]).lower()),
        "object": deployment,
        "request": call.body,
    }
    stub._statuses[deployment_id] = []
    return _Answer(201, copy.deepcopy(deployment), {"location": url})


@_stateful("repos/list-deployments")
def _list_deployments(stub: GitHubStub, call: Call) -> _Answer:
    repo = (str(call.path["owner"]).lower(), str(call.path["repo"]).lower())
    found = [d["object"] for _, d in sorted(stub._deployments.items(), reverse=True) if d["repo"] == repo]
    for name in ("sha", "ref", "task", "environment"):
        if name in call.query and call.query[name] != "none":
            found = [d for d in found if d.get(name) == call.query[name]]
    return stub._page(found, call.query, call.raw_path, call.query_pairs)


@_stateful("repos/get-deployment")
def _get_deployment(stub: GitHubStub, call: Call) -> _Answer:
    return _Answer(200, copy.deepcopy(stub._deployment(call.path)["object"]))


@_stateful("repos/delete-deployment")
def _delete_deployment(stub: GitHubStub, call: Call) -> _Answer:
    deployment = stub._deployment(call.path)
    statuses = stub._statuses.get(deployment["object"]["id"], [])
    if statuses and statuses[-1]["object"]["state"] != "inactive":
        return _Answer(
            422,
            {
                "message": "We cannot delete an active deployment unless it is the only deployment in a "
                "given environment.",
                "documentation_url": DOCS,
                "status": "422",
            },
        )
    del stub._deployments[deployment["object"]["id"]]
    return _Answer(204)


@_stateful("repos/create-deployment-status")
def _create_status(stub: GitHubStub, call: Call) -> _Answer:
    deployment = stub._deployment(call.path)["object"]
    history = stub._statuses[deployment["id"]]
    _, status, _ = stub.description.response(call.op, 201)
    status_id = stub._new_id()
    now = stub._tick()
    previous_env = history[-1]["object"]["environment"] if history else deployment["environment"]
    target = call.body.get("log_url") or call.body.get("target_url", "")
    status.update(
        id=status_id,
        node_id=f"DES_stub{status_id}",
        url=f"{deployment['url']}/statuses/{status_id}",
        state=call.body["state"],
        creator=stub._user(),
        description=call.body.get("description", ""),
        environment=call.body.get("environment", previous_env),
        target_url=target,
        log_url=target,
        environment_url=call.body.get("environment_url", ""),
        created_at=now,
        updated_at=now,
        deployment_url=deployment["url"],
        repository_url=deployment["repository_url"],
    )
    history.append({"object": status, "request": call.body})
    return _Answer(201, copy.deepcopy(status), {"location": status["url"]})


@_stateful("repos/list-deployment-statuses")
def _list_statuses(stub: GitHubStub, call: Call) -> _Answer:
    deployment = stub._deployment(call.path)["object"]
    found = [s["object"] for s in reversed(stub._statuses[deployment["id"]])]
    return stub._page(found, call.query, call.raw_path, call.query_pairs)


@_stateful("repos/get-deployment-status")
def _get_status(stub: GitHubStub, call: Call) -> _Answer:
    deployment = stub._deployment(call.path)["object"]
    for s in stub._statuses[deployment["id"]]:
        if s["object"]["id"] == call.path["status_id"]:
            return _Answer(200, copy.deepcopy(s["object"]))
    raise _NotFound


class _Handler(BaseHTTPRequestHandler):
    owner: GitHubStub
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: without it, 40 ms per keep-alive request
    server_version = "GitHub.com"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            answer = self.owner._handle(self.command, self.path, headers, raw)
        except Exception as exc:  # a stub bug must not hang the client: answer 500 and record it
            with self.owner._lock:
                self.owner.errors.append(f"stub: {self.command} {self.path}: {type(exc).__name__}: {exc}")
            answer = _Answer(500, {"message": f"stub failure: {exc}"})
        if answer.body is None or answer.status == 204:
            data = b""
        elif isinstance(answer.body, bytes):
            data = answer.body
        elif isinstance(answer.body, str):
            data = answer.body.encode()
        else:
            data = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        sent = {k.lower() for k in answer.headers}
        if data and "content-type" not in sent:
            self.send_header("content-type", "application/json; charset=utf-8")
        defaults = {
            "x-github-api-version-selected": BASE_API_VERSION,
            "x-github-media-type": "github.v3; format=json",
            "x-github-request-id": f"STUB:{len(self.owner.requests):06d}",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-used": "1",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-resource": "core",
        }
        for name, value in defaults.items():
            if name not in sent:
                self.send_header(name, value)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _serve


def iter_operations(description: Description | None = None) -> Iterator[Operation]:
    """Every operation of the description (for tests that sweep the route table)."""
    yield from (description or load_description()).operations.values()
