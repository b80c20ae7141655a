"""The run engine: a typed plan in, a run directory and a typed result out."""
