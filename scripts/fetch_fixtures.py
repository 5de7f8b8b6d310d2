#!/usr/bin/env python
"""Placeholder until the demo-data issue: nothing to fetch yet."""
print("fixtures: none needed yet")
