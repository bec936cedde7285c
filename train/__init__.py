"""Training of read classifiers on readshard datasets.

``python -m train --config configs/sample.yaml`` (see :mod:`train.cli`), the 6-mer naive Bayes
baseline ``python -m train.baseline``, configs in :mod:`train.config`, models in
:mod:`train.model`, the loop in :mod:`train.loop`, metrics in :mod:`train.metrics`.
"""

from train.config import ConfigError, TrainConfig, apply_overrides, load_config

__all__ = ["ConfigError", "TrainConfig", "apply_overrides", "load_config"]
