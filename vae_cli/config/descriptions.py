"""What each config key means, read from the comments above its field in the schema dataclasses (the one place
the keys are documented), for ``vae-train --help``.

A comment block describes the fields right below it, up to a blank line or the next comment (``# skip: ...
rollback: ...`` above two fields describes both). Section rules (``# --- speed ---``) are not descriptions.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import io
import tokenize
import typing
from typing import Any


@functools.cache
def _class_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` for the fields ``cls`` itself declares."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found: dict[str, str] = {}
    block: list[str] = []
    previous_was_field = False
    body_indent: int | None = None
    lines = source.splitlines()
    comments = {
        tok.start[0]: tok.string
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    start = next(i for i, line in enumerate(lines, start=1) if line.lstrip().startswith("class "))
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if number <= start or not stripped:
            block, previous_was_field = [], False
            continue
        if body_indent is None:
            body_indent = indent
        if indent != body_indent:
            continue  # inside a method or a docstring's continuation
        if number in comments and stripped.startswith("#"):
            text = comments[number].lstrip("#").strip()
            if previous_was_field:
                block = []
            previous_was_field = False
            if not text.startswith("---"):
                block.append(text)
            continue
        name, colon, _ = stripped.partition(":")
        if colon and name.isidentifier() and not stripped.startswith(("def ", "class ", "@")):
            if block:
                found[name] = " ".join(block)
            previous_was_field = True
        else:
            block, previous_was_field = [], False
    return found


def field_description(cls: type, name: str) -> str:
    """The comment describing field ``name`` of dataclass ``cls`` (or of the class it inherits it from)."""
    for klass in cls.__mro__:
        written = vars(klass).get("__field_docs__", {})  # a class built without source (config/objectives.py)
        if name in written:
            return written[name]
        if dataclasses.is_dataclass(klass) and name in _class_comments(klass):
            return _class_comments(klass)[name]
    return ""


def first_sentence(text: str) -> str:
    """``text`` up to its first full stop followed by a space (a one-line description)."""
    for end in range(len(text) - 1):
        abbreviation = text[max(0, end - 3) : end].endswith(("e.g", "i.e", "et al")) or text[end - 1] == "."
        if text[end] == "." and text[end + 1] == " " and not abbreviation and text[end + 2 : end + 3] != ".":
            return text[: end + 1]
    return text


def type_name(cls: type, name: str) -> str:
    """``int``, ``float | None``, or an enum's choices ``auto|cpu|cuda|mps``, for field ``name`` of ``cls``."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not evaluate here: show it as written
        return str(next((f.type for f in dataclasses.fields(cls) if f.name == name), "?"))
    hint: Any = hints.get(name)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    base = args[0] if optional and len(args) == 1 else hint
    if isinstance(base, type) and issubclass(base, enum.Enum):
        text = "|".join(str(m.value) for m in base)
    elif isinstance(base, type):
        text = base.__name__
    else:
        text = str(base).replace("typing.", "")
    return f"{text} | None" if optional else text
