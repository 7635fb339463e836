"""Write the generated CRDs to crds/ (and to the Helm chart's templates when the chart exists)."""

from __future__ import annotations

from pathlib import Path

from gonka_operator.crdgen import crd_files

ROOT = Path(__file__).resolve().parent.parent

for name, text in crd_files().items():
    (ROOT / "crds" / name).write_text(text)
    print(f"wrote crds/{name}")
