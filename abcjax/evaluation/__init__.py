"""Evaluation of ABC samples: syntax checker, MIDI conversion, musical statistics, memorization."""

from abcjax.evaluation.abc_checker import CheckResult, check_tune, split_collection, split_tunes
from abcjax.evaluation.evaluate import evaluate_files, summarize
from abcjax.evaluation.memorization import TrainingIndex
from abcjax.evaluation.midi import (Abc2MidiResult, ConversionResult, abc2midi_check, abc_to_midi,
                                    classify_abc2midi_output, study_valid)
from abcjax.evaluation.music_stats import compare, tune_stats

__all__ = ["CheckResult", "check_tune", "split_collection", "split_tunes", "evaluate_files",
           "summarize", "TrainingIndex", "Abc2MidiResult", "ConversionResult", "abc2midi_check",
           "abc_to_midi", "classify_abc2midi_output", "study_valid", "compare", "tune_stats"]
