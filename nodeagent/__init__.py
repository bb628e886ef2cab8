"""nodeagent: the trustplane host daemon (TPM, evidence, hub client)."""

__version__ = "0.1.0"
