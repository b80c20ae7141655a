"""Fleet extrapolation: turn a calibration (a measured sweep or a published profile) and a
stated demand into cards, servers, megawatts and CPU cores, with every assumption listed.

Modules: `catalog` (accelerators), `profile` (hardware profiles), `scenario` (demand and
facility), `model` (the default fleet model), `flops` (the seeds' FLOPs cross-check and
implied MFU), `inverse` (what a fixed power budget serves), `calibrate` (forecast-model
parameters) and `report` (tables).
"""
