"""agentmem's own tests use the agentmem.testing plugin (registered through its entry point)."""

pytest_plugins = ["pytester"]
