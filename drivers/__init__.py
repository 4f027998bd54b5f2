"""Acquisition drivers: scanners, capture cards, files and demo devices, one interface."""
