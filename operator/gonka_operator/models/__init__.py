"""pydantic models of the custom resources: the one source of the CRD schemas (see crdgen.py)."""
