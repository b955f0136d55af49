"""A ``python`` system: the factory the config names builds it."""

from __future__ import annotations

from lead2cash.systems import BindingContext, SystemBinding, import_dotted
from lead2cash.systems.python.config import PythonSystemConfig


def build(name: str, config: PythonSystemConfig, context: BindingContext) -> SystemBinding:
    factory = import_dotted(config.factory, context.config_dirs)
    options = dict(config.options)
    options.update({k: v.get_secret_value() for k, v in config.secrets.items()})
    binding: SystemBinding = factory(name=name, options=options)
    return binding
