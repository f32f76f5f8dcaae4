"""Per-kind checks for the golden fixtures; see tests/test_fixtures.py for discovery and dispatch."""
