"""Markdown escaping for every untrusted value in a report or a PR comment. Pure.

GitHub renders comments as GitHub-flavoured markdown with a subset of HTML. An untrusted value must not add
HTML (`<img src=…>` would load a tracker; `<!-- bgdeploy:… -->` would forge the marker that finds our
comment), ping anyone (`@org/team`), link issues (`#1`), or leave its table cell or code block.
"""

from __future__ import annotations

import re

from bgdeploy.untrusted.secrets import mask

# A zero-width joiner after @ keeps "@someone" from pinging (GitHub needs a word boundary before the login).
_NO_MENTION = "@\u200d"
# `$` too: GitHub renders $…$ as math, where \color and \huge would let a value dress up as a verdict.
_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+!|~$])")


def escape_inline(text: str, limit: int = 120) -> str:
    """Untrusted text made safe on one line (a table cell, a list item, a heading): whitespace collapses,
    long text is cut at `limit`, HTML is entity-escaped and markdown punctuation backslash-escaped."""
    # Masked first: escaping turns hf_… into hf\_… and a cut keeps a secret's start, both unseen by a later mask.
    text = " ".join(mask(str(text)).split())
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _SPECIALS.sub(r"\\\1", text)
    return text.replace("@", _NO_MENTION)


def escape_block(lines: list[str], info: str = "text") -> str:
    """Untrusted lines inside a fenced block: no run of three backticks survives inside (so the fence cannot
    be closed from inside), and `<!--` is broken so a log line cannot carry our hidden marker."""
    body = "\n".join(_block_line(line) for line in lines)
    return f"```{info}\n{body}\n```"


def _block_line(line: str) -> str:
    line = mask(line).replace("\r", "").replace("<!--", "<\u200b!--").replace("@", _NO_MENTION)
    while "```" in line:
        line = line.replace("```", "`\u200b``")
    return line


def code_line(text: str) -> str:
    """Untrusted text as one line of an indented code block: it stays one line (a newline followed by text
    would end the block), and it carries no marker or mention."""
    return _block_line(re.sub(r"[\r\n]+", " ", str(text)))


def code_span(text: str, limit: int = 120) -> str:
    """Untrusted text shown as inline code: backticks cannot end the span, and it stays on one line."""
    text = " ".join(mask(str(text)).split())
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    text = text.replace("`", "'").replace("@", _NO_MENTION).replace("<!--", "<\u200b!--")
    return f"`{text}`" if text else "``"
