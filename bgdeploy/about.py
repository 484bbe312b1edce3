"""What `bgdeploy --version` says: the version, and the commit it was installed from when that is known.

The commit comes from the git checkout it runs from (an editable install, or `python -m bgdeploy` in the
repository), else from pip's record of the install (`direct_url.json`): the commit of a
`pip install git+https://...` install, or the checkout a `pip install .` or `pipx install .` was made from.
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

from bgdeploy import __version__


def _git_commit(directory: Path) -> str | None:
    if not (directory / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), "describe", "--always", "--dirty", "--abbrev=12", "--exclude=*"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = done.stdout.strip()
    return found if done.returncode == 0 and found else None


def _installed_from() -> str | None:
    try:
        raw = metadata.distribution("bgdeploy").read_text("direct_url.json")
        record = json.loads(raw) if raw else {}
    except (metadata.PackageNotFoundError, ValueError, OSError):
        return None
    vcs = record.get("vcs_info") if isinstance(record, dict) else None
    if isinstance(vcs, dict) and vcs.get("commit_id"):
        return str(vcs["commit_id"])[:12]
    url = urlparse(str(record.get("url", ""))) if isinstance(record, dict) else None
    if url is not None and url.scheme == "file":
        return _git_commit(Path(unquote(url.path)))
    return None


def commit() -> str | None:
    return _git_commit(Path(__file__).resolve().parent.parent) or _installed_from()


def version_text() -> str:
    found = commit()
    return f"bgdeploy {__version__} (commit {found})" if found else f"bgdeploy {__version__} (commit unknown)"
