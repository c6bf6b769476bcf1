"""What the authorization service needs to face anonymous callers: its own outbound client."""
