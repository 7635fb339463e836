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


def ml_node(name: str, gpus: int = 1, *, model: str = "Qwen/Qwen3-32B-FP8",
            product: str | None = "NVIDIA-H100-80GB-HBM3", cache: str = "{size: 10Gi}", extra: str = "") -> str:
    """An InferenceNode of the NetworkNode `gonka` (on kwok's H100 nodes unless `product` is None);
    `cache` is its hfCache, `extra` more spec lines (each starting with a newline and two spaces)."""
    product_line = f"\n  gpuProduct: {product}" if product else ""
    return f"""
apiVersion: gonka.ai/v1alpha1
kind: InferenceNode
metadata: {{name: {name}}}
spec:
  networkNodeRef: {{name: gonka}}
  model: {model}
  gpus: {gpus}{product_line}
  hfCache: {cache}{extra}
"""
