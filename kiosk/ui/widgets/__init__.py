"""Reusable widgets: dialogs, the PIN pad, capture thumbnails."""
