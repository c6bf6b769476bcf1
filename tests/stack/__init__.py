"""Fixtures' helpers: a Matrix user and LiveKit peers that talk to the real stack."""
