"""Developer tooling: start a real local MatrixRTC stack (Synapse, LiveKit, maubot + rtcbot).

Used by `make run` (``python -m rtcbot_stack``) and by the test harness (tests/conftest.py);
one module, two callers. Not part of the plugin (.mbp).
"""
