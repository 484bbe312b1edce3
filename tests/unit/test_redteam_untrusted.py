"""Red-team cases for the untrusted-text choke points: secrets that markdown escaping or cutting would hide
from the mask, and hostile characters the corpus did not hold."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from bgdeploy.github.comment import comment_body
from bgdeploy.plan.result import Result
from bgdeploy.plan.state import Release
from bgdeploy.report.markdown import render
from bgdeploy.untrusted import secrets
from bgdeploy.untrusted.commands import inert
from bgdeploy.untrusted.markdown import code_line, code_span, escape_block, escape_inline
from tests.unit.test_untrusted import acts_as_command, lines_of

TOKEN = "hf_Abc_def*ghi_JKLmnop"


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    secrets.forget_all()
    secrets.register(TOKEN)
    yield
    secrets.forget_all()


def _no_token(text: str) -> None:
    bare = text.replace("\\", "").replace("\u200b", "").replace("\u200d", "")
    secret = TOKEN[3:]
    assert not any(secret[i : i + 5] in bare for i in range(len(secret) - 4)), text


@pytest.mark.parametrize("escape", [escape_inline, code_span, code_line, lambda t: escape_block([t])])
def test_escaping_masks_before_it_changes_the_text(escape: object) -> None:
    # Escaping hf_… to hf\_… (or cutting it) before masking would hide the token from the mask.
    assert callable(escape)
    _no_token(escape(f"container said HF_TOKEN={TOKEN} and died"))


def test_a_secret_cut_by_the_length_limit_leaves_no_prefix() -> None:
    text = "x" * 100 + " " + TOKEN + " tail"
    _no_token(escape_inline(text, 110))
    _no_token(code_span(text, 110))


def test_a_failure_quoting_a_secret_reaches_no_comment() -> None:
    result = Result(
        "deploy",
        "chat",
        outcome="failed",
        active_colour="blue",
        target=Release("green", "m", "img", "h", "t"),
        failure=f"the server exited: HF_TOKEN={TOKEN}",
        warnings=[f"log: {TOKEN}"],
    )
    _no_token(comment_body(render(result), "chat", None))


@pytest.mark.parametrize(
    "value",
    ["\u2028::error::x", "\u0085::error::x", "\x1c::error::x", "a\r\n::error::x", "\u000b::warning::x", "\f::x::"],
)
def test_unicode_line_breaks_and_spaces_cannot_start_a_command(value: str) -> None:
    assert not any(acts_as_command(line) for line in lines_of(inert(value)))


@pytest.mark.parametrize("value", ["a\u2028<!-- bgdeploy:chat -->", "x\u0085| a | b |", "@\u200bocto"])
def test_inline_escaping_holds_for_unicode_separators(value: str) -> None:
    out = escape_inline(value)
    assert "<!--" not in out and "\u2028" not in out and "\u0085" not in out
    assert re.search(r"(?<!\\)\|", out) is None


def test_a_deployment_status_is_masked_before_it_is_cut_to_githubs_140_characters() -> None:
    from bgdeploy.github.action import Runner

    sent: list[str] = []

    class Fake:
        def deployment_status(self, repo: str, deployment_id: int, state: str, **kw: object) -> None:
            sent.append(str(kw["description"]))

    result = Result("deploy", "chat", outcome="failed", failure="x" * 130 + " " + TOKEN)
    Runner({"GITHUB_REPOSITORY": "o/r"}, [].append, github=Fake()).finish_deployment(  # type: ignore[arg-type]
        1, result, "production"
    )
    (description,) = sent
    _no_token(description[:140])


def test_inline_values_cannot_open_githubs_math_mode() -> None:
    # GitHub renders $…$ and $$…$$ as math: \color and \huge would let a model answer dress up as our verdict.
    out = escape_inline(r"$\color{green}{\huge\textsf{Deployed}}$ and $$x$$")
    assert re.search(r"(?<!\\)\$", out) is None, out
