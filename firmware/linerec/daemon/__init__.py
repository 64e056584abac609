"""The daemon: the one place that wires the rooms together (hardware -> dsp -> call -> store)."""
