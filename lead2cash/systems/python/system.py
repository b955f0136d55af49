"""The ``python`` system type: a system provided by a factory function named in config."""

from __future__ import annotations

from lead2cash.systems.python.config import PythonSystemConfig
from lead2cash.systems.registry import ANY, AnyOptions, Operation, SystemType

SYSTEM = SystemType(
    name="python",
    description="A system provided by Python code: factory(name=..., options=...) returns an object with "
    "source(object, options) and target(action, options).",
    config=PythonSystemConfig,
    build="lead2cash.systems.python.binding:build",
    sources=(Operation(ANY, "whatever the factory's system reads", AnyOptions),),
    actions=(Operation(ANY, "whatever the factory's system does", AnyOptions),),
)
