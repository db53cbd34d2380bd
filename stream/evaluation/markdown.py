"""One ``## `` section of a markdown report file (EVALUATION.md, BENCHMARKS.md) rewritten in place.

Each evaluation or benchmark script owns one section; every other byte of the file is kept, so
the scripts can write the same file in any order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_HEADING_UP_TO_2 = re.compile(r"#{1,2} ")


def replace_section(text: str, heading: str, body: str, title: str = "Evaluation") -> str:
    """``text`` with the section under ``heading`` (up to the next ``#``/``##`` heading)
    replaced by ``body`` (which starts with the heading), or ``body`` appended when absent.

    >>> doc = "# E\\n\\n## A\\na\\n## S\\nold\\n## B\\nb\\n"
    >>> replace_section(doc, "## S", "## S\\nNEW\\n")
    '# E\\n\\n## A\\na\\n## S\\nNEW\\n\\n## B\\nb\\n'
    >>> replace_section("# E\\n\\n## A\\na\\n", "## S", "## S\\nNEW\\n")
    '# E\\n\\n## A\\na\\n\\n## S\\nNEW\\n'
    >>> replace_section("", "## S", "## S\\n", title="Benchmarks")
    '# Benchmarks\\n\\n## S\\n'
    """
    lines = text.rstrip("\n").split("\n") if text.strip() else [f"# {title}"]
    block = body.rstrip("\n").split("\n")
    begin = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if begin is None:
        new = [*lines, "", *block]
    else:
        end = begin + 1
        while end < len(lines) and not _HEADING_UP_TO_2.match(lines[end]):
            end += 1
        tail = lines[end:]
        new = [*lines[:begin], *block, *([""] if tail else []), *tail]
    return "\n".join(new) + "\n"


def write_section(path: Path, heading: str, body: str, title: str) -> None:
    """Rewrite ``heading``'s section of ``path`` atomically (read right before writing: another
    script may have rewritten its own section meanwhile)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(replace_section(text, heading, body, title), encoding="utf-8")
    os.replace(tmp, path)
