"""The local HTTP API: OpenAI-compatible chat, models, health, and appliance routes."""
