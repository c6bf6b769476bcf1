"""Matrix I/O at the edge: notices, delayed events, the bot's own membership, transports."""
