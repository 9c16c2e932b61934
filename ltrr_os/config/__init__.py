"""Configuration: runtime settings (and, later, catalog schemas)."""

from ._settings import DEFAULT_CONFIG_FILE, LtrrSettings, load_settings

__all__ = ["DEFAULT_CONFIG_FILE", "LtrrSettings", "load_settings"]
