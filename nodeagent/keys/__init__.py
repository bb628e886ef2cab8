"""The agent's image-key features: the release client (:mod:`nodeagent.keys.release`)."""
