"""Sensors: folder watchers that turn arriving files into partition runs."""
