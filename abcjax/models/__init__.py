"""Model families of the study (GPT and LSTM) behind one interface, their size tables, sampling."""

from abcjax.models.configs import (
    PUBLISHED_PARAMS,
    SIZE_TABLES,
    TABLE_B_CHOICES,
    ModelConfig,
    get_config,
    size_names,
    size_table_markdown,
)
from abcjax.models.decode import generate, sample_logits
from abcjax.models.model import LanguageModel, build_model, count_params

__all__ = [
    "PUBLISHED_PARAMS",
    "SIZE_TABLES",
    "TABLE_B_CHOICES",
    "LanguageModel",
    "ModelConfig",
    "build_model",
    "count_params",
    "generate",
    "get_config",
    "sample_logits",
    "size_names",
    "size_table_markdown",
]
