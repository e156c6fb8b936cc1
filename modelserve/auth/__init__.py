"""Authentication: passwords, access and refresh tokens, API keys, the caller, rate limits."""
