"""Carrying out a deploy: observe the host, run the steps, wait with deadlines, roll back on failure."""
