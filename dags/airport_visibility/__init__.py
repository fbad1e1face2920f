"""Hooks of the airport_visibility example: its feature views, label and data landing."""
