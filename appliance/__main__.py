"""`python -m appliance` runs the `gemba` command (used to start the daemon detached)."""

from appliance.cli import main

# Guarded: the worker process is started with "spawn", which imports this module again.
if __name__ == "__main__":
    main()
