"""alpacare: a reproducible build of medical instruction tuning (AlpaCare / medAlpaca)."""

__version__ = "0.1.0"
