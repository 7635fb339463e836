"""Run the chart's Argo CD health checks (Lua) in a real Lua interpreter (lupa), the way Argo CD
does: the object as global `obj`, the script's returned table is the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lupa import LuaRuntime

ARGOCD = Path(__file__).resolve().parents[2] / "charts" / "gonka-operator" / "argocd"
SCRIPTS = {"NetworkNode": ARGOCD / "health-networknode.lua", "InferenceNode": ARGOCD / "health-inferencenode.lua"}


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """{"status": Healthy|Progressing|Degraded|…, "message": …} for `obj` of `kind`."""
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPTS[kind].read_text())
    return {str(k): str(v) for k, v in dict(result).items()}
