"""Helpers shared by the tests: real peers, test data and sources, the touch UI under Xvfb."""
