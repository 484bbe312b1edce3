"""The stand-in model's answer table (tests/fakevllm/fakevllm.py), without starting a server."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

FAKEVLLM_PATH = Path(__file__).resolve().parents[1] / "fakevllm" / "fakevllm.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fakevllm", FAKEVLLM_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fakevllm", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


fakevllm = _load()


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("WHAT IS THE CAPITAL OF JAPAN?", "The capital of Japan is Tokyo."),
        ("what's the capital of india", "The capital of India is New Delhi."),
        ("What is 2+2?", "The answer is 4."),
        ("What is 12 * 3?", "The answer is 36."),
        ("What is 10 divided by 4?", "The answer is 2.5."),
        ("What is 7 - 10?", "The answer is -3."),
    ],
)
def test_known_answers(prompt: str, expected: str) -> None:
    assert fakevllm.answer(prompt) == expected


def test_json_request_gets_valid_json() -> None:
    reply = fakevllm.answer("Reply with JSON only. What is the capital of Italy?")
    assert json.loads(reply) == {"answer": "The capital of Italy is Rome."}


def test_other_prompts_get_a_deterministic_echo() -> None:
    first = fakevllm.answer("Tell me a story about a lighthouse")
    assert first == fakevllm.answer("Tell me a story about a lighthouse")
    assert "lighthouse" in first


@pytest.mark.parametrize("country", list(fakevllm.CAPITALS))
def test_wrong_answers_name_another_capital(country: str) -> None:
    right = fakevllm.CAPITALS[country]
    reply = fakevllm.answer(f"What is the capital of {country}?", wrong=True)
    assert right not in reply
    assert any(capital in reply for capital in fakevllm.CAPITALS.values())


def test_wrong_arithmetic_is_off_by_one() -> None:
    assert fakevllm.answer("What is 2+2?", wrong=True) == "The answer is 5."


def test_wrong_json_does_not_parse() -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(fakevllm.answer("Reply with JSON: capital of France?", wrong=True))
