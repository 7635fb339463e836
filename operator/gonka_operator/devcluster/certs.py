"""PKI for the local control plane: one CA, the API server's serving cert, client certs, SA keys.

Everything is generated with `cryptography` (no openssl binary needed) into one directory as PEM
files, because the Kubernetes binaries only take file paths. TLS keys are ECDSA P-256 (fast to
generate, which matters for cold start); the service-account key is RSA because that is what the
brief asks for and what every token verifier understands.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The first address of --service-cluster-ip-range: in-cluster clients reach the API server there,
# so it has to be in the serving cert even though nothing routes to it on this machine.
SERVICE_IP = "10.96.0.1"
SERVICE_CIDR = "10.96.0.0/16"

# name -> (CommonName = user, Organization = groups). The CN/O pairs are the identities the default
# RBAC bootstrap policy grants rights to, so no extra bindings are needed.
CLIENTS: dict[str, tuple[str, list[str]]] = {
    "admin": ("kubernetes-admin", ["system:masters"]),
    "kube-controller-manager": ("system:kube-controller-manager", []),
    "kube-scheduler": ("system:kube-scheduler", []),
    # kwok writes node/pod status and leases for many nodes; admin rights keep that simple.
    "kwok": ("kwok-controller", ["system:masters"]),
    # The API server's identity towards aggregated API servers (--proxy-client-cert-file). Having a
    # request-header CA at all also fills kube-system/extension-apiserver-authentication, whose
    # absence makes the controller-manager and scheduler log an error every 10 s.
    "front-proxy-client": ("front-proxy-client", []),
}

_VALIDITY = dt.timedelta(days=3650)

_Key: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Pki:
    """Paths of the generated PEM files."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    def client_cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def client_key(self, name: str) -> Path:
        return self.directory / f"{name}.key"


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: _Key) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(data)
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: x509.Name, issuer: x509.Name, key: _Key) -> x509.CertificateBuilder:
    # Back-date a little so a clock that is a few seconds behind does not reject a fresh cert.
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
    )


def _name(cn: str, orgs: list[str] | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs or []]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: _Key,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _ec_key()
    builder = (
        _builder(subject, ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def generate_pki(directory: Path, extra_ips: tuple[str, ...] = ()) -> Pki:
    """Create every cert and key the control plane needs in `directory` (overwriting).

    `extra_ips` go into the API server's certificate too (the real node's pods reach the API server
    on the machine's own address, through the `kubernetes` Service).
    """
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)

    ca_key = _ec_key()
    ca_name = _name("gonka-devcluster-ca")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(pki.ca_key, ca_key)
    _write_cert(pki.ca_cert, ca_cert)

    dns = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
           "kubernetes.default.svc.cluster.local"]
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", SERVICE_IP, *extra_ips)]
    cert, key = _leaf(ca_cert, ca_key, _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    _write_cert(pki.apiserver_cert, cert)
    _write_key(pki.apiserver_key, key)

    for name, (cn, orgs) in CLIENTS.items():
        cert, key = _leaf(ca_cert, ca_key, _name(cn, orgs), ExtendedKeyUsageOID.CLIENT_AUTH)
        _write_cert(pki.client_cert(name), cert)
        _write_key(pki.client_key(name), key)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def write_kubeconfig(path: Path, server: str, pki: Pki, client: str) -> Path:
    """A kubeconfig for `client` (a key of CLIENTS) with absolute file references.

    File references rather than embedded data keep it short and readable; the PKI directory lives
    as long as the cluster does.
    """
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: gonka-dev
  cluster:
    server: {server}
    certificate-authority: {pki.ca_cert}
users:
- name: {client}
  user:
    client-certificate: {pki.client_cert(client)}
    client-key: {pki.client_key(client)}
contexts:
- name: gonka-dev
  context:
    cluster: gonka-dev
    user: {client}
current-context: gonka-dev
"""
    path.write_text(text)
    path.chmod(0o600)
    return path


def _load_ca(pki: Pki) -> tuple[x509.Certificate, _Key]:
    cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return cert, key


def issue_client_cert(pki: Pki, name: str, cn: str, orgs: list[str]) -> Pki:
    """One more client certificate from the cluster's CA, as `name`.crt/.key (e.g. a kubelet's
    `system:node:<node>` in `system:nodes`, which the Node authorizer and the default RBAC know)."""
    ca_cert, ca_key = _load_ca(pki)
    cert, key = _leaf(ca_cert, ca_key, _name(cn, orgs), ExtendedKeyUsageOID.CLIENT_AUTH)
    _write_cert(pki.client_cert(name), cert)
    _write_key(pki.client_key(name), key)
    return pki


def issue_serving_cert(pki: Pki, name: str, cn: str, dns: list[str], ips: list[str]) -> Pki:
    """A serving certificate from the cluster's CA (the kubelet's, so the API server can verify it)."""
    ca_cert, ca_key = _load_ca(pki)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert, key = _leaf(ca_cert, ca_key, _name(cn), ExtendedKeyUsageOID.SERVER_AUTH, sans)
    _write_cert(pki.client_cert(name), cert)
    _write_key(pki.client_key(name), key)
    return pki
