from lago_connector_env import _fresh_registry, lago

__all__ = ["_fresh_registry", "lago"]
