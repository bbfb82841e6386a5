"""Tests of `integrations/`: every provider against a real local process or server."""
