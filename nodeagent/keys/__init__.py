"""The agent's key service for encrypted container images (issue 9).

``release`` asks the hub for layer secrets (keys-hub's half); ``service`` serves them to the
ocicrypt key provider over the daemon's unix socket, batching concurrent unwraps into one
release; ``cache`` keeps released secrets sealed to the TPM; ``provider`` is the
``trustplane-keyprovider`` command that ocicrypt runs.
"""
