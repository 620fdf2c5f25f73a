"""khod VM scenarios: one module per scenario (see ../README.md)."""
