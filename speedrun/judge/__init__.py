"""The judge's services: measurement, scoring arithmetic, and the blinded panel (labels, answer schema, worksheet)."""
