"""Local stand-ins for GitHub in bgdeploy's tests: a REST API server checked against GitHub's OpenAPI description
(``GitHubStub``) and real webhook payloads for ``GITHUB_EVENT_PATH`` (``event_payload``, ``write_event``).

Both read npm packages that ``scripts/setup-node`` installs into ``.cache/node``.
"""

from tests.github_stub.events import event_payload, examples_available, write_event
from tests.github_stub.server import (
    Fault,
    GitHubStub,
    OpenAPIMissing,
    RecordedRequest,
    load_description,
    openapi_available,
)

__all__ = [
    "Fault",
    "GitHubStub",
    "OpenAPIMissing",
    "RecordedRequest",
    "event_payload",
    "examples_available",
    "load_description",
    "openapi_available",
    "write_event",
]
