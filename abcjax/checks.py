"""One way to refuse a value: name the field, say what it must be, show what it was."""

from __future__ import annotations

from typing import Any, Iterable


def require(rules: Iterable[tuple[str, bool, str, Any]], *, prefix: str = "",
            error: type[Exception] = ValueError) -> None:
  """Raises `error` for the first (name, ok, allowed, value) whose ok is false:
  "<prefix><name> must be <allowed>, got <value>"."""
  for name, ok, allowed, value in rules:
    if not ok:
      raise error(f"{prefix}{name} must be {allowed}, got {value!r}")
