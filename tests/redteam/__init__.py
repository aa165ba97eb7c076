"""Helpers of the red-team suite (`tests/test_redteam.py`): hostile student sources
(`attacks`), a grade runner that watches the grader from outside (`harness`), and a launcher
that runs the grader as an ordinary user (`as_user`)."""
