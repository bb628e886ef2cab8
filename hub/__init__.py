"""hub: the trustplane verification service."""
