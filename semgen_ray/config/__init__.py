"""Typed, validated, side-effect-free configuration (README, "Configuration")."""

from semgen_ray.config.load import PRESETS, from_dict, load_config, parse_override, to_dict
from semgen_ray.config.schema import (
    ConfigError, DataConfig, DiscoveryConfig, EvaluateConfig, IngestConfig, ModelConfig,
    PhantomConfig, RayConfig, SemGenConfig, StoreConfig, TrainConfig,
)

__all__ = [
    "PRESETS", "from_dict", "load_config", "parse_override", "to_dict", "ConfigError", "DataConfig",
    "DiscoveryConfig", "EvaluateConfig", "IngestConfig", "ModelConfig", "PhantomConfig", "RayConfig",
    "SemGenConfig", "StoreConfig", "TrainConfig",
]
