"""Stream pay-gate: sells QRIS-paid access to live HLS streams and gates the origin."""

__version__ = "0.1.0"
