"""Pulumi component resources: each owns one part of a stack's cloud graph."""
