"""Model families (GPT, LSTM, GRU) behind one interface, their configs and size tables, sampling.

Importing this package registers every family (registry.py).
"""

from abcjax.models import gpt, gru, lstm  # noqa: F401  (each registers its family)
from abcjax.models.configs import TABLE_B_CHOICES, TABLES, ModelConfig, size_table_markdown
from abcjax.models.decode import generate, sample_logits
from abcjax.models.gpt import GPTConfig
from abcjax.models.gru import GRUConfig
from abcjax.models.lstm import LSTMConfig
from abcjax.models.model import LanguageModel, build_model, count_params
from abcjax.models.registry import config_class, config_from_dict, get_config, names

__all__ = [
    "TABLES",
    "TABLE_B_CHOICES",
    "GPTConfig",
    "GRUConfig",
    "LSTMConfig",
    "LanguageModel",
    "ModelConfig",
    "build_model",
    "config_class",
    "config_from_dict",
    "count_params",
    "generate",
    "get_config",
    "names",
    "sample_logits",
    "size_table_markdown",
]
