"""Metric writers: JSON lines (the record the plots read) and TensorBoard event files."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsWriter:
  """Appends one JSON object per record to <workdir>/metrics.jsonl and mirrors scalars to TensorBoard.

  On resume, records past the restored step are dropped first, so a resumed run's file reads as if
  the run had never stopped.
  """

  def __init__(self, workdir: str | pathlib.Path, *, resume_step: int = 0, tensorboard: bool = True):
    self.path = pathlib.Path(workdir) / METRICS_FILE
    records = read_metrics(self.path) if self.path.exists() else []
    kept = [r for r in records if r.get("step", 0) <= resume_step]
    if len(kept) != len(records):
      self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    self._file = open(self.path, "a")
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter  # Imported lazily: only the writer needs it.
      self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"), purge_step=resume_step + 1)

  def write(self, record: dict[str, Any]) -> None:
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._tb is not None:
      step = int(record["step"])
      for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
          self._tb.add_scalar(key, value, step)
      self._tb.flush()

  def close(self) -> None:
    self._file.close()
    if self._tb is not None:
      self._tb.close()


def read_metrics(path: str | pathlib.Path) -> list[dict[str, Any]]:
  path = pathlib.Path(path)
  if path.is_dir():
    path = path / METRICS_FILE
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


class NullWriter:
  """Stands in for MetricsWriter on processes other than the first: they record nothing."""

  def write(self, record: dict[str, Any]) -> None:
    del record

  def close(self) -> None:
    pass
