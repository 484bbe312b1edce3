"""Read YAML into plain JSON-like data, remembering the line and column of every key and value.

Built on PyYAML's safe composer, with our own construction so that hostile input is refused with a
located message instead of a traceback or a hang: duplicate keys, unknown or Python tags (never
executed), alias bombs, deep nesting, non-finite or huge numbers, binary content, oversized files.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bgdeploy.errors import Problem

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 40
MAX_NODES = 50_000
MAX_INT = 2**63 - 1

Path = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null")}
_TIMESTAMP = f"{_TAG}timestamp"
_MERGE = f"{_TAG}merge"
_SEQ = f"{_TAG}seq"
_MAP = f"{_TAG}map"

_BOOLEAN_WORDS = {"yes", "no", "on", "off", "y", "n", "true", "false"}


@dataclass
class Located:
    """Data parsed from YAML, with 1-based (line, column) of each value and of each mapping key."""

    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    raw_scalars: dict[Path, str] = field(default_factory=dict)

    def locate(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Position of `path`, else of its nearest ancestor that exists in the file.

        A scalar is located at its value; a mapping or list (or any path when `key`) at its key.
        """
        probe = tuple(path)
        while True:
            if (key or probe not in self.raw_scalars) and probe in self.keys:
                return self.keys[probe]
            if probe in self.values:
                return self.values[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]


class YamlProblems(Exception):
    """The text is not usable YAML; carries located problems."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def _pos(node: Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def decode(raw: bytes) -> str:
    """Bytes of a spec file to text, refusing what is not a small UTF-8 text file."""
    if len(raw) > MAX_BYTES:
        raise YamlProblems([Problem("", f"file is {len(raw)} bytes; a spec is at most {MAX_BYTES} bytes", 1, 1)])
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        msg = "file contains NUL bytes: this is not a text YAML file (is it binary or UTF-16?); save it as UTF-8"
        raise YamlProblems([Problem("", msg, line, 1)])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        msg = f"invalid UTF-8 at byte {exc.start}: save the file as UTF-8"
        raise YamlProblems([Problem("", msg, line, 1)]) from None


def _check_depth(text: str) -> None:
    """Refuse deep nesting from the token stream, before the (recursive) composer sees it."""
    depth = 0
    openers = (
        yaml.BlockMappingStartToken,
        yaml.BlockSequenceStartToken,
        yaml.FlowMappingStartToken,
        yaml.FlowSequenceStartToken,
    )
    closers = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    for token in yaml.scan(text, Loader=yaml.SafeLoader):
        if isinstance(token, openers):
            depth += 1
            if depth > MAX_DEPTH:
                mark = token.start_mark
                msg = f"nesting deeper than {MAX_DEPTH} levels: a spec is never this deep"
                raise YamlProblems([Problem("", msg, mark.line + 1, mark.column + 1)])
        elif isinstance(token, closers):
            depth -= 1


def _syntax_problem(exc: yaml.YAMLError, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line, col = _line_col(text, exc.position)
        return Problem("", f"character {chr(exc.character)!r} (0x{exc.character:x}) is not allowed in YAML", line, col)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        context = f" {exc.context}" if exc.context else ""
        if "\\t" in problem or "\t" in problem:
            message = "tab character: YAML does not allow tabs for indentation; indent with spaces"
        elif "expected a single document" in (exc.context or ""):
            message = "several YAML documents (---) in one file: keep exactly one"
        else:
            message = f"YAML syntax error: {problem}{context}"
        return Problem("", message, line, col)
    return Problem("", f"YAML error: {exc}", 1, 1)


class _Builder:
    """Turns composed nodes into data, recording positions; collects problems instead of stopping."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.out = Located(data=None)
        self.problems: list[Problem] = []
        self.nodes = 0

    def fail(self, node: Node, path: Path, message: str) -> None:
        line, col = _pos(node)
        self.problems.append(Problem(dotted(path), message, line, col))

    def build(self, node: Node, path: Path, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            # Aliases may expand a small file into an enormous tree ("billion laughs"): stop early.
            raise _TooLarge(node)
        if depth > MAX_DEPTH:
            raise _TooDeep(node)
        self.out.values[path] = _pos(node)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                self.fail(node, path, f"tag {node.tag} is not allowed here; remove it")
                return None
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            if node.tag != _MAP:
                self.fail(node, path, f"tag {node.tag} is not allowed here; remove it")
                return None
            return self.mapping(node, path, depth)
        self.fail(node, path, "unsupported YAML node")
        return None

    def mapping(self, node: MappingNode, path: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        for key_node, value_node in self._merged_pairs(node, path):
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, path, "a mapping key must be a plain word, not a list or mapping")
                continue
            # Keys are taken as written: `on:` or `1:` name a key, they are not a boolean or a number.
            key = str(key_node.value)
            child = (*path, key)
            if key in first_seen:
                self.fail(
                    key_node,
                    child,
                    f"duplicate key {key!r}: first defined at line {first_seen[key]}; remove one of them",
                )
            first_seen[key] = key_node.start_mark.line + 1
            self.out.keys[child] = _pos(key_node)
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def _merged_pairs(self, node: MappingNode, path: Path) -> Iterator[tuple[Node, Node]]:
        """Pairs of a mapping with YAML merge keys (`<<: *base`) resolved; explicit keys win."""
        explicit = [(k, v) for k, v in node.value if k.tag != _MERGE]
        explicit_keys = {k.value for k, _ in explicit if isinstance(k, ScalarNode)}
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.fail(source, path, "a merge key (<<) takes a mapping or a list of mappings")
                    continue
                for k, v in source.value:
                    if isinstance(k, ScalarNode) and k.value not in explicit_keys and k.tag != _MERGE:
                        explicit_keys.add(k.value)
                        yield k, v
        yield from explicit

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        self.out.raw_scalars[path] = node.value
        if node.tag == _TIMESTAMP:
            return node.value  # a date is just text to us
        if node.tag not in _SCALAR_TAGS:
            self.fail(node, path, f"tag {node.tag} is not allowed (nothing in a spec is ever executed); remove the tag")
            return None
        try:
            value = self.loader.construct_object(node)
        except ValueError:
            self.fail(node, path, "number too large")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, path, f"{node.value!r} is not a finite number")
            return None
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            self.fail(node, path, "number too large")
            return None
        return value


class _TooLarge(Exception):
    def __init__(self, node: Node) -> None:
        self.node = node


class _TooDeep(Exception):
    def __init__(self, node: Node) -> None:
        self.node = node


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def is_boolean_word(raw: str | None) -> bool:
    """True for YAML 1.1 words that load as booleans (a frequent surprise: `no`, `on`)."""
    return raw is not None and raw.lower() in _BOOLEAN_WORDS


def parse(text: str) -> Located:
    """Parse one YAML document; raise YamlProblems with every located problem found."""
    try:
        _check_depth(text)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise YamlProblems([_syntax_problem(exc, text)]) from None
    if node is None:
        raise YamlProblems(
            [
                Problem(
                    "", "file is empty: a spec needs at least version, name, target, model.name and runtime.image", 1, 1
                )
            ]
        )
    builder = _Builder(loader)
    try:
        data = builder.build(node, (), 0)
    except _TooLarge as exc:
        line, col = _pos(exc.node)
        raise YamlProblems(
            [
                Problem(
                    "",
                    f"more than {MAX_NODES} values once aliases are expanded (an alias bomb?); simplify the anchors",
                    line,
                    col,
                )
            ]
        ) from None
    except _TooDeep as exc:
        line, col = _pos(exc.node)
        raise YamlProblems(
            [Problem("", f"nesting deeper than {MAX_DEPTH} levels (a recursive alias?)", line, col)]
        ) from None
    if builder.problems:
        raise YamlProblems(builder.problems)
    builder.out.data = data
    return builder.out
