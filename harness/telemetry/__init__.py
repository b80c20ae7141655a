"""Host and accelerator inventory and sampling; one vendor library per module."""
