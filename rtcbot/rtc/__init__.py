"""The MatrixRTC protocol core: pure, stdlib-only, no network and no Matrix client.

- ``membership``: parse and validate every call-membership shape; build the content the bot sends.
- ``session``: a per-room call model that turns memberships into started/joined/left/ended events.
- ``announce``: the words people read, and batching of join/leave notices.
- ``identity``: LiveKit room names and participant identities (MSC4195).
"""
