"""TLS settings for ``wss://``: dask's ``Security`` object, same keywords.

Each process presents the certificate of its role: the client
``tls_client_*``, the scheduler ``tls_scheduler_*``, workers and nannies
``tls_worker_*``.  With ``tls_ca_file`` both ends of every connection must
show a certificate signed by that CA (mutual TLS); host names are not checked,
because the certificates name roles, not machines (as in dask).  Without a CA
a client checks the server against the system's trusted CAs and its host
name, as a browser would.

Every ``tls_*`` value is a file path or the PEM text itself.
``Security.temporary()`` makes a throwaway self-signed certificate for all
roles (it needs the ``cryptography`` package); ``LocalCluster(security=True)``
uses it.
"""
from __future__ import annotations

import json
import os
import ssl
import tempfile

ROLES = ("client", "scheduler", "worker")
_FIELDS = ("tls_ca_file", "tls_ciphers", "tls_client_key", "tls_client_cert",
           "tls_scheduler_key", "tls_scheduler_cert", "tls_worker_key", "tls_worker_cert")
#: environment variable a nanny passes its worker process the settings in
ENV_VAR = "TRIOFLOW_SECURITY"
_MIN_VERSIONS = {None: ssl.TLSVersion.TLSv1_2, 1.2: ssl.TLSVersion.TLSv1_2,
                 1.3: ssl.TLSVersion.TLSv1_3}


class Security:
    """``Security(tls_ca_file=..., tls_client_cert=..., tls_client_key=..., ...)``;
    pass it as ``security=`` to ``Client``, ``LocalCluster`` and the servers."""

    def __init__(self, require_encryption: bool | None = None, *, tls_ca_file=None,
                 tls_ciphers=None, tls_client_key=None, tls_client_cert=None,
                 tls_scheduler_key=None, tls_scheduler_cert=None, tls_worker_key=None,
                 tls_worker_cert=None, tls_min_version=None, extra_conn_args=None):
        self.require_encryption = bool(require_encryption)
        self.tls_ca_file = tls_ca_file
        self.tls_ciphers = tls_ciphers
        self.tls_client_key, self.tls_client_cert = tls_client_key, tls_client_cert
        self.tls_scheduler_key, self.tls_scheduler_cert = tls_scheduler_key, tls_scheduler_cert
        self.tls_worker_key, self.tls_worker_cert = tls_worker_key, tls_worker_cert
        if tls_min_version not in _MIN_VERSIONS and not isinstance(tls_min_version,
                                                                   ssl.TLSVersion):
            raise ValueError(f"tls_min_version must be 1.2, 1.3 or an ssl.TLSVersion, "
                             f"not {tls_min_version!r}")
        self.tls_min_version = _MIN_VERSIONS.get(tls_min_version, tls_min_version)
        self.extra_conn_args = dict(extra_conn_args or {})
        for name in _FIELDS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"Security({name}=...) must be a file path or PEM text, "
                                f"not {type(value).__name__}")

    @classmethod
    def temporary(cls) -> "Security":
        """One fresh self-signed certificate and key, used as the CA and by
        every role: encryption between the processes of one cluster."""
        cert, key = _self_signed_certificate()
        return cls(require_encryption=True, tls_ca_file=cert,
                   tls_client_cert=cert, tls_client_key=key,
                   tls_scheduler_cert=cert, tls_scheduler_key=key,
                   tls_worker_cert=cert, tls_worker_key=key)

    def __repr__(self):
        shown = []
        for name in _FIELDS:
            value = getattr(self, name)
            if value is not None:
                shown.append(f"{name}={'<PEM>' if _is_pem(value) else repr(value)}")
        if self.require_encryption:
            shown.insert(0, "require_encryption=True")
        return f"Security({', '.join(shown)})"

    # ------------------------------------------------------------ checks

    def has_certificate(self, role: str) -> bool:
        return getattr(self, f"tls_{_role(role)}_cert") is not None

    def check_address(self, address: str, what: str = "address") -> None:
        """Refuse an unencrypted address when encryption is required."""
        if self.require_encryption and not address.startswith(("wss://", "inproc://")):
            raise ValueError(f"{what} {address!r} is not encrypted, and this Security "
                             "requires encryption: use a wss:// (or tls://) address")

    # ------------------------------------------------------------ contexts

    def server_context(self, role: str) -> ssl.SSLContext:
        """The context a ``role`` process serves ``wss://`` with."""
        role = _role(role)
        cert, key = getattr(self, f"tls_{role}_cert"), getattr(self, f"tls_{role}_key")
        if cert is None:
            raise ValueError(f"serving wss:// as the {role} needs a certificate: "
                             f"Security(tls_{role}_cert=..., tls_{role}_key=...), "
                             "or --tls-cert/--tls-key on the command line")
        # no system CAs: with tls_ca_file, clients must show a certificate of
        # that CA and no other
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._configure(context)
        _load_chain(context, cert, key)
        if self.tls_ca_file is not None:
            _load_ca(context, self.tls_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self, role: str) -> ssl.SSLContext:
        """The context a ``role`` process connects to ``wss://`` with."""
        role = _role(role)
        if self.tls_ca_file is not None:
            context = _only_ca(self.tls_ca_file, self)
        else:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            self._configure(context)
        cert = getattr(self, f"tls_{role}_cert")
        if cert is not None:
            _load_chain(context, cert, getattr(self, f"tls_{role}_key"))
        return context

    def _configure(self, context: ssl.SSLContext) -> None:
        context.minimum_version = self.tls_min_version
        if self.tls_ciphers:
            context.set_ciphers(self.tls_ciphers)

    # ------------------------------------------------------------ passing on

    def to_env(self) -> str:
        """The settings as one string, for a worker process's environment."""
        fields = {name: getattr(self, name) for name in _FIELDS}
        fields["require_encryption"] = self.require_encryption
        fields["tls_min_version"] = self.tls_min_version.name
        return json.dumps(fields)

    @classmethod
    def from_env(cls, environ=os.environ) -> "Security | None":
        text = environ.get(ENV_VAR)
        if not text:
            return None
        fields = json.loads(text)
        version = fields.pop("tls_min_version", None)
        return cls(**fields, tls_min_version=ssl.TLSVersion[version] if version else None)


def _role(role: str) -> str:
    role = {"nanny": "worker", "peer": "worker"}.get(role, role)
    if role not in ROLES:
        raise ValueError(f"unknown TLS role {role!r}: one of {ROLES}")
    return role


def _is_pem(value: str) -> bool:
    return "-----BEGIN" in value


def _only_ca(ca: str, security: Security) -> ssl.SSLContext:
    # a context made with a CA trusts only that CA, not the system's
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    security._configure(context)
    _load_ca(context, ca)
    context.check_hostname = False  # certificates name roles, not hosts
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _load_ca(context: ssl.SSLContext, ca: str) -> None:
    if _is_pem(ca):
        context.load_verify_locations(cadata=ca)
    else:
        context.load_verify_locations(cafile=ca)


def _load_chain(context: ssl.SSLContext, cert: str, key: str | None) -> None:
    if not (_is_pem(cert) or (key is not None and _is_pem(key))):
        context.load_cert_chain(cert, key)
        return
    # the ssl module loads certificates only from files: write PEM text to a
    # private file for the moment it takes
    with tempfile.TemporaryDirectory(prefix="trioflow-tls-") as directory:
        paths = []
        for name, value in (("cert.pem", cert), ("key.pem", key)):
            if value is None or not _is_pem(value):
                paths.append(value)
                continue
            path = os.path.join(directory, name)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(value)
            paths.append(path)
        context.load_cert_chain(paths[0], paths[1])


def _self_signed_certificate(common_name: str = "trioflow") -> tuple[str, str]:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise ImportError("Security.temporary() (and security=True) needs the "
                          "'cryptography' package: pip install cryptography") from None
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert_pem, key_pem
