"""Adapters that make agentmem the memory of agent frameworks, one module per framework."""
