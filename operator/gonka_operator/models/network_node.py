"""NetworkNode: one Gonka network node (chain node + DAPI + tmkms + nginx proxy)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from gonka_operator.models.common import (
    Condition,
    CRDModel,
    EnvVar,
    Resources,
    Scheduling,
    SecretKeyRef,
    Storage,
)

ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]


class NetworkNodeImages(CRDModel):
    """Images of upstream's v0.2.14 deploy files (deploy/join/docker-compose.yml, REFERENCE.md §2). The
    chain and api binaries upgrade themselves in place (cosmovisor) at on-chain heights, so these only
    matter for a new host: the operator never rolls them on its own."""

    # v0.2.14 deploy/join/docker-compose.yml, service `node`
    node: str = Field(default="ghcr.io/product-science/inferenced:0.2.14", description="Chain node image.")
    # v0.2.14 deploy/join/docker-compose.yml, service `api`
    api: str = Field(default="ghcr.io/product-science/api:0.2.14", description="API node (DAPI) image.")
    # v0.2.14 deploy/join/docker-compose.yml, service `tmkms`
    tmkms: str = Field(
        default="ghcr.io/product-science/tmkms-softsign-with-keygen:0.2.14",
        description="tmkms image (holds the consensus key).",
    )
    # v0.2.14 deploy/join/docker-compose.yml, service `proxy`
    proxy: str = Field(default="ghcr.io/product-science/proxy:0.2.14", description="nginx proxy image.")
    # deploy/join/docker-compose.yml, service `explorer` (upstream publishes only `latest`)
    explorer: str = Field(default="ghcr.io/product-science/explorer:latest", description="Explorer image.")


class ChainConfig(CRDModel):
    seed_api_url: str = Field(
        default="http://node2.gonka.ai:8000", alias="seedAPIURL", description="DAPI seed API URL."
    )
    seed_node_rpc_url: str = Field(
        default="http://node2.gonka.ai:26657", alias="seedNodeRPCURL", description="Seed node RPC URL."
    )
    seed_node_p2p_url: str = Field(
        default="tcp://node2.gonka.ai:5000", alias="seedNodeP2PURL", description="Seed node P2P address."
    )
    rpc_server_urls: list[str] = Field(
        default_factory=lambda: ["http://node1.gonka.ai:26657", "http://node2.gonka.ai:26657"],
        alias="rpcServerURLs",
        min_length=1,
        max_length=2,
        description="RPC servers used for state sync (RPC_SERVER_URL_1/2).",
    )
    sync_with_snapshots: bool = Field(default=True, description="Start from a state-sync snapshot.")
    trusted_block_period: int = Field(default=2000, ge=1, description="TRUSTED_BLOCK_PERIOD.")


class ExposedPort(CRDModel):
    type: ServiceType = Field(default="LoadBalancer", description="Service type for this public port.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Service port; default 5000 for p2p, 8000 for proxy."
    )
    node_port: int | None = Field(
        default=None, ge=30000, le=32767, description="Fixed nodePort (type NodePort or LoadBalancer)."
    )
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Annotations of the Service (e.g. for a cloud load balancer)."
    )


class Exposure(CRDModel):
    p2p: ExposedPort = Field(
        default_factory=ExposedPort,
        alias="p2p", description="Public P2P Service (to the node's 26656); default port 5000."
    )
    proxy: ExposedPort = Field(
        default_factory=ExposedPort, description="Public proxy Service (to nginx :80); default port 8000."
    )


class NetworkNodeStorage(CRDModel):
    inference: Storage = Field(
        default_factory=lambda: Storage(size="1Ti"),
        description="/root/.inference: chain data, node key and warm keyring (~150 GB late 2025).",
    )
    dapi: Storage = Field(
        default_factory=lambda: Storage(size="10Gi"), description="/root/.dapi: api state, node registry."
    )
    tmkms: Storage = Field(
        default_factory=lambda: Storage(size="1Gi"),
        description="/root/.tmkms: consensus key and double-sign state.",
    )


class NetworkNodeResources(CRDModel):
    node: Resources = Field(default_factory=Resources, description="Resources of the chain node.")
    api: Resources = Field(default_factory=Resources, description="Resources of the api.")
    tmkms: Resources = Field(default_factory=Resources, description="Resources of tmkms.")
    proxy: Resources = Field(default_factory=Resources, description="Resources of the proxy.")


class ExtraEnv(CRDModel):
    node: list[EnvVar] = Field(
        default_factory=list, description="Extra env of the node (CONFIG_<section>__<key> sets config.toml)."
    )
    api: list[EnvVar] = Field(
        default_factory=list, description="Extra env of the api (DAPI_A__B sets config key a.b)."
    )


class Explorer(CRDModel):
    enabled: bool = Field(default=False, description="Run the explorer dashboard (port 5173).")


class Onboarding(CRDModel):
    create_warm_key: bool = Field(
        default=True, alias="createWarmKey",
        description="Run the warm-key Job: `inferenced keys show` first, `keys add` only when no key of "
        "keyName exists (never twice). The password comes from keyringPasswordSecretRef.")
    register_participant: bool = Field(
        default=False, alias="registerParticipant",
        description="After the warm key exists, run `inferenced register-new-participant <publicURL> "
        "<accountPubKey> --node-address <seedAPIURL>` once (a Job). The cold-key steps stay human; "
        "status.onboarding.nextStep shows them.")


class NetworkNodeSpec(CRDModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.publicHost) || (has(self.publicURL) && has(self.p2pExternalAddress))",
                    "message": "set spec.publicHost, or both spec.publicURL and spec.p2pExternalAddress",
                    "fieldPath": ".publicHost",
                },
            ]
        }
    )

    key_name: str = Field(min_length=1, max_length=64, description="Name of the warm key (KEY_NAME).")
    account_pub_key: str = Field(
        min_length=1, description="Public key of the cold account key (ACCOUNT_PUBKEY); never the key itself."
    )
    keyring_password_secret_ref: SecretKeyRef = Field(
        description="Secret holding the keyring password (KEYRING_PASSWORD)."
    )
    public_host: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$",
        description="Public DNS name or IP (no scheme). Derives publicURL and p2pExternalAddress.",
    )
    public_url: str | None = Field(
        default=None,
        alias="publicURL",
        pattern=r"^https?://[^/]+",
        description="Public URL of the proxy (DAPI_API__PUBLIC_URL). Default http://<publicHost>:<proxy port>.",
    )
    p2p_external_address: str | None = Field(
        default=None,
        alias="p2pExternalAddress",
        pattern=r"^tcp://[^/]+:[0-9]+$",
        description="P2P address announced to peers (P2P_EXTERNAL_ADDRESS). Default tcp://<publicHost>:<p2p port>.",
    )
    images: NetworkNodeImages = Field(default_factory=NetworkNodeImages, description="Container images.")
    chain: ChainConfig = Field(default_factory=ChainConfig, description="Seeds and state sync (mainnet defaults).")
    storage: NetworkNodeStorage = Field(
        default_factory=NetworkNodeStorage,
        description="PersistentVolumeClaims; retained when the NetworkNode is deleted.",
    )
    resources: NetworkNodeResources = Field(
        default_factory=NetworkNodeResources, description="Resources per container."
    )
    scheduling: Scheduling = Field(default_factory=Scheduling, description="Where the pods run.")
    exposure: Exposure = Field(default_factory=Exposure, description="Public Services (P2P and proxy).")
    explorer: Explorer = Field(default_factory=Explorer, description="Optional explorer dashboard.")
    env: ExtraEnv = Field(default_factory=ExtraEnv, description="Extra environment variables.")
    onboarding: Onboarding = Field(default_factory=Onboarding, description="Automated onboarding steps (Jobs).")


class NetworkNodeEndpoints(CRDModel):
    admin_url: str | None = Field(default=None, alias="adminURL", description="Admin API (private, :9200).")
    callback_url: str | None = Field(
        default=None, alias="callbackURL", description="PoC callback URL given to ML nodes (:9100)."
    )
    public_url: str | None = Field(default=None, alias="publicURL", description="Public URL of the proxy.")
    p2p_external_address: str | None = Field(
        default=None, alias="p2pExternalAddress", description="Announced P2P address."
    )


class RegistryCounts(CRDModel):
    registered: int = Field(default=0, description="Managed ML nodes present in the admin registry.")
    failed: int = Field(default=0, description="Managed ML nodes whose current status is FAILED.")


class ChainStatus(CRDModel):
    height: int = Field(description="latest_block_height of the node's :26657/status (refreshed at most every "
                        "10 minutes, and at once when catchingUp or the epoch phase flips).")
    catching_up: bool = Field(alias="catchingUp", description="sync_info.catching_up of :26657/status.")
    observed_at: str | None = Field(default=None, alias="observedAt", description="When height was read (RFC 3339).")


class EpochStatus(CRDModel):
    id: int | None = Field(default=None, description="latest_epoch.index of the public API's /v1/epochs/latest.")
    phase: str = Field(description="PoCGenerate, PoCGenerateWindDown, PoCValidate, PoCValidateWindDown or Inference.")
    confirmation_po_c: bool | None = Field(default=None, alias="confirmationPoC",
                                           description="is_confirmation_poc_active.")
    participant_weight: int | None = Field(
        default=None, alias="participantWeight",
        description="The participant's weight in this epoch (setup report, active_in_epoch).")


class OnboardingStatus(CRDModel):
    warm_key_address: str | None = Field(default=None, alias="warmKeyAddress",
                                         description="Address of the warm key (public), from the warm-key Job.")
    warm_key_job: str | None = Field(default=None, alias="warmKeyJob", description="State of the warm-key Job.")
    registration_job: str | None = Field(default=None, alias="registrationJob",
                                         description="State of the participant-registration Job.")
    next_step: str | None = Field(default=None, alias="nextStep",
                                  description="What is missing, with the command to run (cold-key steps are human).")


class NetworkNodeStatus(CRDModel):
    observed_generation: int | None = Field(default=None, description="Last generation reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing, Degraded; from the admin API's setup report KeysReady, "
        "PermissionsGranted, ActiveInEpoch, ChainSynced.")
    chain: ChainStatus | None = Field(default=None, description="Chain sync (:26657/status).")
    epoch: EpochStatus | None = Field(default=None, description="Epoch and phase (/v1/epochs/latest).")
    weight: int | None = Field(default=None, description="Sum of the ML nodes' poc_weight (status.registry.pocWeight).")
    onboarding: OnboardingStatus | None = Field(default=None, description="Warm key and participant registration.")
    endpoints: NetworkNodeEndpoints | None = Field(default=None, description="Derived endpoints.")
    admin_reachable: bool | None = Field(default=None, description="Did the last registry poll succeed.")
    registry: RegistryCounts | None = Field(default=None, description="Registry counts from the last poll.")
    unmanaged_nodes: list[str] | None = Field(
        default=None, description="Registry entries no InferenceNode owns (left alone)."
    )
