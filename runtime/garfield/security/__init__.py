"""Mutual TLS between a job's replicas: certificates, identities, gRPC credentials.

torch- and gRPC-free at import (the operator issues certificates with it; `cryptography` itself is
imported on first use)."""
