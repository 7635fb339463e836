"""Client of the network node's admin API (REFERENCE.md §4): the only code that talks to it."""

from gonka_operator.admin.client import AdminClient, api_root, create_http_client, is_rejection_500
from gonka_operator.admin.errors import AdminError, AdminNotFound, AdminRejected, AdminUnavailable
from gonka_operator.admin.models import (
    AdminState,
    EpochMLNode,
    Hardware,
    InferenceNodeConfig,
    ModelArgs,
    ModelOverride,
    NodeEntry,
    NodeState,
    Onboarding,
    OnboardingTiming,
    RegisteredNode,
)

__all__ = [
    "AdminClient",
    "AdminError",
    "AdminNotFound",
    "AdminRejected",
    "AdminState",
    "AdminUnavailable",
    "EpochMLNode",
    "Hardware",
    "InferenceNodeConfig",
    "ModelArgs",
    "ModelOverride",
    "NodeEntry",
    "NodeState",
    "Onboarding",
    "OnboardingTiming",
    "RegisteredNode",
    "api_root",
    "create_http_client",
    "is_rejection_500",
]
