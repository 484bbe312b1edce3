"""Which server flag an argument names, as vLLM's parser reads it. Pure.

vLLM's `FlexibleArgumentParser` turns `_` into `-` in a flag's name (`--trust_remote_code` is
`--trust-remote-code`), and argparse takes any unique prefix of a long flag (`--gpu-memory-util`). A guard that
compares the argument as written would let those spellings through, so every guard asks `names_flag`.
"""

from __future__ import annotations


def flag_of(arg: str) -> str | None:
    """The long flag an argument names, normalised (`--foo_bar=1` -> `--foo-bar`); None for a value."""
    if not arg.startswith("--") or arg == "--":
        return None
    return "--" + arg.split("=", 1)[0][2:].replace("_", "-")


def names_flag(arg: str, flag: str) -> bool:
    """Whether vLLM could read `arg` as `flag` (itself, another spelling of it, or an abbreviation of it)."""
    written = flag_of(arg)
    return written is not None and len(written) > 2 and flag.startswith(written)
