"""Configuration: YAML files validated by pydantic models, errors with file, line and field."""

from lead2cash.config.errors import ConfigError, ConfigIssue
from lead2cash.config.loader import LoadedConfig, load_config
from lead2cash.config.schema import HubConfig, RouteConfig, json_schema

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "HubConfig",
    "LoadedConfig",
    "RouteConfig",
    "json_schema",
    "load_config",
]
