"""`--option key=value` parsing shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import json


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` → (key, value), the value read as JSON when it parses (else a string)."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--option expects key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value
