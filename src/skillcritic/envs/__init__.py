"""Environments: each a gymnasium env registered under the ``skillcritic/`` namespace."""
