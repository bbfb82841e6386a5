"""Chaos tests of issue 12 ("Accepted means delivered"): `pytest -m chaos`; CHATOPS_CHAOS=long for the long run."""
