"""maubot loads the main class from here (maubot.yaml: `main_class: rtcbot/RtcBot`)."""

from .bot import RtcBot

__all__ = ["RtcBot"]
