"""Media side: getting onto the LiveKit SFU (tokens) and what the bot does there."""
