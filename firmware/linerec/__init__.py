"""linerec: call-recorder appliance firmware and collector."""

__version__ = "0.1.0"
