"""Serving of exported vidgen models over TF Serving's gRPC / REST API.

Imports `vidgen` and `export`; neither imports this package.
"""
