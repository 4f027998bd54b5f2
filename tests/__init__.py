"""The test suite, a package so that pytest puts the repository root on sys.path and
tests import their helpers as ``tests.support.*`` (no sys.path edits)."""
