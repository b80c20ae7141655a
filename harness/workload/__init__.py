"""Workloads: the trace model, trace loaders, synthetic generators and prompt building."""
