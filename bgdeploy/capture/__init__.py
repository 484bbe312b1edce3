"""Capture of live requests on the host and their replay before the switch (validation.replay).

Side effects only; the pure parts (file names, the keeper's script, sampling, figures and gates) are in
plan/capture.py. Captured bodies stay on the host: the keeper and the replay run there and only aggregates
come back over the connection.
"""
