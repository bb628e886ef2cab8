"""nodeagent: the trustplane host daemon (TPM, evidence, hub client)."""
