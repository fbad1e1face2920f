"""Hooks of the aircraft_utilisation example: its feature views, label and data landing."""
