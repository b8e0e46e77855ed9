"""Trio shells: the servers that feed the core state machines events."""
