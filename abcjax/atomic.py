"""Files that readers never see half written."""

from __future__ import annotations

import os
import pathlib
from typing import Callable


def replace(path: str | pathlib.Path, write: Callable[[pathlib.Path], None]) -> None:
  """Calls write(tmp) for a temporary path beside `path` (`<name>.tmp`), then renames it onto
  `path`. If write fails, the temporary file is removed and `path` is left as it was."""
  path = pathlib.Path(path)
  tmp = path.with_name(path.name + ".tmp")
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def write_text(path: str | pathlib.Path, text: str) -> None:
  """Writes `text` (UTF-8, its own line ends: CSV's \\r\\n stay) to `path` atomically."""
  replace(path, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))
