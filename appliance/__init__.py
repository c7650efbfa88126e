"""Gemba appliance: the daemon, its engine, store and API, and the clients that talk to it."""

__version__ = "0.1.0"
