"""Request content in a model server's log lines, withheld before a line reaches bgdeploy's output.

vLLM up to 0.10.1 logs every request at INFO by default ("Received request ID: prompt: '...', params: ..."; off
only with --disable-log-requests), later versions log the prompt at DEBUG ("Request ID details: prompt: ...")
and, with --enable-log-outputs, the answers ("Generated response ID: output: ..."): see vllm/entrypoints/
logger.py. bgdeploy quotes a failed colour's last log lines in exceptions, reports and PR comments, and those
lines then held live users' prompts, the replayed captured requests among them (validation.replay). Only the
request id stays; everything after it (prompt, token ids, sampling params with their stop strings and schemas)
is withheld.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

WITHHELD = "[request content withheld by bgdeploy]"
_REQUEST_LINE = re.compile(r"^(?P<head>.*?\b(?:Received request|Request \S+ details|Generated response) ?\S*?:)\s.*$")


def withhold_requests(lines: Iterable[str]) -> list[str]:
    """The lines with the content of every logged request or response replaced by WITHHELD."""
    out = []
    for line in lines:
        match = _REQUEST_LINE.match(line)
        out.append(f"{match.group('head')} {WITHHELD}" if match else line)
    return out
