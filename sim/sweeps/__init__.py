"""Sweeps and capacity plans over grids of scenario keys (`servesim sweep`, `servesim plan`)."""
