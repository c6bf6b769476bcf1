from .bot import RtcBot

__all__ = ["RtcBot"]
