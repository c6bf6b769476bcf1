"""What the authorization service needs to face anonymous callers (its outbound client is
net/outbound.py's `anonymous_callers_client`)."""
