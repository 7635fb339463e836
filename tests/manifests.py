"""Manifests shared by the integration, chart and fault tests."""

from __future__ import annotations

# A NetworkNode named `gonka` with its keyring Secret (two documents, apply with kubectl -f -).
NETWORK_NODE = """
apiVersion: v1
kind: Secret
metadata: {name: keyring}
stringData: {password: pw}
---
apiVersion: gonka.ai/v1alpha1
kind: NetworkNode
metadata: {name: gonka}
spec:
  keyName: k
  accountPubKey: pub
  keyringPasswordSecretRef: {name: keyring, key: password}
  publicHost: gonka.example.com
"""
