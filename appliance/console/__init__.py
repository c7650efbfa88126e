"""The operator console (Textual). A client of the daemon: no model, SQL or NVML calls here."""
