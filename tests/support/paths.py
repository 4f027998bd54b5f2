"""Where the repository is, for tests that read its docs, examples and sources."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
