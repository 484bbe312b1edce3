"""Fleets: one bluegreen.yaml deployed across many GPU hosts in batches, with a fleet-wide gate and rollback.

Pure planning (members.py: each host's own spec; batches.py: the order of the rollout; result.py and
report.py: what happened, per host) is kept apart from runner.py, which connects, locks and runs the
single-host cycle on many hosts at once.
"""
