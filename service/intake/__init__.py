"""Intake: request bodies in every accepted format, decoded, parsed and keyed to windows."""
