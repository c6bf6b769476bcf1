"""The plugin's version, as maubot.yaml declares it."""

__version__ = "0.2.0"
