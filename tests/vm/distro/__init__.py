"""Scenarios of the distro tier (vmtest/distro.py)."""
