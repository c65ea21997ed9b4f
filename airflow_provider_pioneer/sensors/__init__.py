"""Sensors of the Pioneer provider."""
