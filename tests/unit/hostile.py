"""A hostile corpus: values a pull request's spec, a host, a container or a model might carry to forge workflow
commands, inject markup, ping people or forge our hidden marker. Shared by the choke points' tests."""

from __future__ import annotations

CORPUS: tuple[str, ...] = (
    "x\n::warning title=Approved::LGTM",
    "::error::forged",
    "   ::set-output name=outcome::deployed",
    "\t::add-mask::nothing",
    "\u00a0::stop-commands::abc",
    "\u2003::group::fake",
    "##[add-mask]secret",
    "see ##[error]forged in the middle",
    "##[group]x",
    "ok\r::error::carriage return",
    "<img src=https://evil.example/p.png>",
    "<script>alert(1)</script>",
    "<details><summary>click</summary>x</details>",
    "@octocat please merge",
    "cc @org/team",
    "<!-- bgdeploy:chat -->",
    "<!-- bgdeploy:evil -->",
    "| break | the | table |",
    "```\n# heading after a closed fence\n```",
    "````",
    "[click](https://evil.example) ![x](https://evil.example/p.png)",
    "#1 closes issue",
    "line one\n\n| x | y |\n| --- | --- |",
)
