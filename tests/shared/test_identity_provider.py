"""Tokens of an identity provider, checked against the keys it publishes (JWKS) over real HTTP.

The provider here is an HTTP server on 127.0.0.1 started by the test, serving generated RSA
and EC keys; the service side is a FastAPI route behind the kernel's principal dependency.
Loopback only: no broker or database is needed.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI

from shared.auth import (
    IdentityProviderVerifier,
    Principal,
    SharedSecretVerifier,
    TokenChecks,
    TokenVerifier,
    issue_token,
    principal_dependency,
    token_verifier,
)
from shared.settings import AuthSettings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ISSUER = "https://idp.chain.example/"
AUDIENCE = "huitou"
# An identity provider's own claim names: a namespaced role list and custom store claims.
CHECKS = TokenChecks(
    issuer=ISSUER,
    audience=AUDIENCE,
    role_claim="groups",
    stores_claim="https://chain.example/stores",
    departments_claim="https://chain.example/departments",
)
SECRET = "a-shared-secret-that-is-long-enough-for-hs256"


@dataclass
class SigningKey:
    """A private key the provider signs with, and its public half as a JWK."""

    kid: str
    algorithm: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        exported = (
            jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
            if isinstance(public, rsa.RSAPublicKey)
            else jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        )
        return {**exported, "kid": self.kid, "use": "sig", "alg": self.algorithm}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@functools.cache
def _rsa_private(name: str) -> rsa.RSAPrivateKey:
    # RSA key generation is slow on a busy machine: each named key is made once per run.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rsa_key(kid: str, *, owner: str = "provider") -> SigningKey:
    """An RSA signing key; another ``owner`` gets another private key under the same kid."""
    return SigningKey(kid, "RS256", _rsa_private(f"{owner}:{kid}"))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def claims(**changes: Any) -> dict[str, Any]:
    """The claims of a store-staff member's token as the provider issues it, with changes."""
    issued = {
        "sub": "SH001-S07",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "groups": ["everyone", "store_staff"],
        "https://chain.example/stores": ["SH001"],
        "iat": int(NOW.timestamp()) - 60,
        "exp": int((NOW + timedelta(hours=1)).timestamp()),
    }
    return {k: v for k, v in (issued | changes).items() if v is not None}


def signed(key: SigningKey, body: dict[str, Any], *, kid: str | None = None) -> str:
    return jwt.encode(body, key.private, algorithm=key.algorithm, headers={"kid": kid or key.kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], body: dict[str, Any], secret: bytes | None) -> str:
    """A token built without PyJWT's guard rails: alg none, or HMAC with any bytes as key."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    if secret is None:
        return f"{signing_input}."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


@dataclass
class KeyServer:
    """The provider's JWKS endpoint: the keys it publishes now, and how often it was asked."""

    keys: list[SigningKey]
    delay_seconds: float = 0.0
    fetches: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, *keys: SigningKey) -> None:
        with self.lock:
            self.keys = list(keys)

    def document(self) -> bytes:
        with self.lock:
            self.fetches += 1
            return json.dumps({"keys": [k.jwk() for k in self.keys]}).encode()


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    """A JWKS endpoint on a free loopback port, serving one RSA and one EC key."""
    served = KeyServer([rsa_key("rsa-2026-11"), ec_key("ec-2026-11")])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(served.delay_seconds)
            body = served.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # the test's output stays readable

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def verifier_for(server: KeyServer, *, refetch_seconds: float = 0.0) -> IdentityProviderVerifier:
    return IdentityProviderVerifier(
        server.url, CHECKS, cache_seconds=300, refetch_seconds=refetch_seconds
    )


@asynccontextmanager
async def service(verifier: TokenVerifier) -> AsyncIterator[httpx.AsyncClient]:
    """A route behind the kernel's principal dependency, judged at NOW."""
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(
        caller: Principal = Depends(principal_dependency(verifier, lambda: NOW)),  # noqa: B008
    ) -> dict[str, Any]:
        return {"subject": caller.subject, "role": caller.role, "stores": sorted(caller.stores)}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield client


async def call(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/whoami", headers={"Authorization": f"Bearer {token}"})


async def test_rs256_and_es256_tokens_name_the_caller_by_the_configured_claims(
    key_server: KeyServer,
) -> None:
    rsa_signer, ec_signer = key_server.keys
    async with service(verifier_for(key_server)) as client:
        for signer in (rsa_signer, ec_signer):
            response = await call(client, signed(signer, claims()))
            assert response.status_code == 200, response.text
            assert response.json() == {
                "subject": "SH001-S07",
                "role": "store_staff",
                "stores": ["SH001"],
            }
    assert key_server.fetches == 1  # the key set is cached


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged signature", "Signature verification failed"),
        ("expired", "token expired"),
        ("not yet valid", "not valid yet"),
        ("wrong issuer", "Invalid issuer"),
        ("no issuer", "iss"),
        ("wrong audience", "Audience doesn't match"),
        ("no audience", "aud"),
        ("unknown kid", "unknown signing key"),
        ("no kid", "names no signing key"),
        ("alg none", "algorithm 'none' is not accepted"),
        ("HS256 with the shared secret", "algorithm 'HS256' is not accepted"),
        ("HS256 keyed with the public key", "algorithm 'HS256' is not accepted"),
        ("RS256 header on the EC key", "does not match the key's algorithm"),
        ("two roles", "exactly one of"),
        ("no role", "exactly one of"),
        ("garbage", "invalid token"),
    ],
)
async def test_every_bad_token_is_refused_with_401(
    key_server: KeyServer, case: str, reason: str
) -> None:
    rsa_signer, ec_signer = key_server.keys
    attacker = rsa_key(rsa_signer.kid, owner="attacker")  # same kid, another private key
    header = {"alg": "HS256", "typ": "JWT", "kid": rsa_signer.kid}
    tokens = {
        "forged signature": lambda: signed(attacker, claims()),
        "expired": lambda: signed(rsa_signer, claims(exp=int(NOW.timestamp()))),
        "not yet valid": lambda: signed(rsa_signer, claims(nbf=int(NOW.timestamp()) + 60)),
        "wrong issuer": lambda: signed(rsa_signer, claims(iss="https://evil.example/")),
        "no issuer": lambda: signed(rsa_signer, claims(iss=None)),
        "wrong audience": lambda: signed(rsa_signer, claims(aud="another-system")),
        "no audience": lambda: signed(rsa_signer, claims(aud=None)),
        "unknown kid": lambda: signed(rsa_signer, claims(), kid="nobody-knows-me"),
        "no kid": lambda: jwt.encode(claims(), rsa_signer.private, algorithm="RS256"),
        "alg none": lambda: hand_made({"alg": "none", "kid": rsa_signer.kid}, claims(), None),
        "HS256 with the shared secret": lambda: hand_made(header, claims(), SECRET.encode()),
        "HS256 keyed with the public key": lambda: hand_made(
            header, claims(), rsa_signer.public_pem()
        ),
        "RS256 header on the EC key": lambda: signed(rsa_signer, claims(), kid=ec_signer.kid),
        "two roles": lambda: signed(rsa_signer, claims(groups=["store_staff", "head_office"])),
        "no role": lambda: signed(rsa_signer, claims(groups=["everyone"])),
        "garbage": lambda: "not.a.token",
    }
    async with service(verifier_for(key_server)) as client:
        assert (await call(client, signed(rsa_signer, claims()))).status_code == 200
        response = await call(client, tokens[case]())
    assert response.status_code == 401, response.text
    assert reason in response.json()["detail"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_rotated_key_is_picked_up_and_a_dropped_one_refused(key_server: KeyServer) -> None:
    old_key, ec_signer = key_server.keys
    new_key = rsa_key("rsa-2026-12")
    async with service(verifier_for(key_server)) as client:
        assert (await call(client, signed(old_key, claims()))).status_code == 200
        key_server.publish(new_key, ec_signer)  # the provider rotates
        assert (await call(client, signed(new_key, claims()))).status_code == 200
        assert key_server.fetches == 2  # the unknown kid refetched the set once
        refused = await call(client, signed(old_key, claims()))
        assert refused.status_code == 401
        assert "unknown signing key" in refused.json()["detail"]


async def test_unknown_kids_refetch_at_most_once_per_interval(key_server: KeyServer) -> None:
    rsa_signer, _ = key_server.keys
    async with service(verifier_for(key_server, refetch_seconds=30)) as client:
        assert (await call(client, signed(rsa_signer, claims()))).status_code == 200
        for n in range(5):
            forged = signed(rsa_signer, claims(), kid=f"random-{n}")
            assert (await call(client, forged)).status_code == 401
    assert key_server.fetches == 1  # a flood of made-up kids does not hammer the provider


async def test_without_the_providers_keys_the_answer_is_503_not_401() -> None:
    unreachable = "http://127.0.0.1:9/.well-known/jwks.json"  # discard port: nothing listens
    verifier = IdentityProviderVerifier(unreachable, CHECKS)
    async with service(verifier) as client:
        response = await call(client, signed(rsa_key("rsa-1"), claims()))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "127.0.0.1" not in response.text  # the reason is logged, not shown


async def test_fetching_keys_does_not_block_the_event_loop(key_server: KeyServer) -> None:
    rsa_signer, _ = key_server.keys
    key_server.delay_seconds = 0.5
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        principal = await verifier_for(key_server).verify(signed(rsa_signer, claims()), now=NOW)
    finally:
        ticker.cancel()
    assert principal.role == "store_staff"
    assert ticks >= 20  # the loop kept running while the slow fetch went on in a thread


def test_the_settings_choose_the_verifier(key_server: KeyServer) -> None:
    shared = token_verifier(AuthSettings(auth_secret=SECRET))
    assert isinstance(shared, SharedSecretVerifier)
    provider = token_verifier(
        AuthSettings(auth_jwks_url=key_server.url, auth_issuer=ISSUER, auth_role_claim="groups")
    )
    assert isinstance(provider, IdentityProviderVerifier)
    assert (provider.checks.issuer, provider.checks.role_claim) == (ISSUER, "groups")


async def test_the_shared_secret_checks_issuer_and_audience_when_set() -> None:
    checks = TokenChecks(issuer="huitou-hq", audience="huitou")
    verifier = SharedSecretVerifier(SECRET, checks)
    good = issue_token(SECRET, subject="hq-1", role="head_office", now=NOW, checks=checks)
    bare = issue_token(SECRET, subject="hq-1", role="head_office", now=NOW)
    async with service(verifier) as client:
        assert (await call(client, good)).status_code == 200
        assert (await call(client, bare)).status_code == 401
        alg_none = hand_made(
            {"alg": "none"}, jwt.decode(good, options={"verify_signature": False}), None
        )
        assert (await call(client, alg_none)).status_code == 401
