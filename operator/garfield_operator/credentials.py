"""The side-effecting half of mutual TLS: the job's CA Secret and a fresh key per (re)created pod.

The decision (``reconcile``) says whether to make the job's CA and which replicas get a
certificate; keys are random, so they are made here, while the decision is applied, and put into
manifests by ``rendering``. The CA is made once per job and stored in its own Secret (owned by the
job): every later certificate is signed by the CA read back from it (a GET at each pass), so a
restarted operator, or another replica of it, keeps signing with the same CA and the running
replicas keep trusting the new ones. The operator needs get,
create and update on Secrets and nothing more: no list or watch, so it never sees other Secrets.
"""

from __future__ import annotations

import base64
from typing import Any

from garfield.plan import Replica
from garfield.security.certificates import KeyPair, issue, new_ca
from garfield.security.files import CA_FILE

from garfield_operator import rendering
from garfield_operator.kube import Client, core_path
from garfield_operator.reconcile import CaSecret


class ForeignSecret(Exception):
    """The job's CA Secret name is taken by a Secret the job does not own."""


def _owned_by(obj: dict[str, Any], job: dict[str, Any]) -> bool:
    uid = job["metadata"]["uid"]
    return any(ref.get("uid") == uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])


def classify(secret: dict[str, Any] | None, job: dict[str, Any]) -> CaSecret:
    """What the decision needs to know of the CA Secret as read: there or not, and whose.

    One the job does not own is never used: it may be the CA of a deleted job of the same name,
    still waiting for garbage collection (signing with it would give certificates that the job's
    own CA, made once that one is gone, does not know), or someone else's."""
    if secret is None:
        return CaSecret.MISSING
    return CaSecret.OURS if _owned_by(secret, job) else CaSecret.FOREIGN


def key_pair(secret: dict[str, Any]) -> KeyPair:
    data = secret.get("data") or {}
    try:
        return KeyPair(base64.b64decode(data[CA_FILE]), base64.b64decode(data[rendering.CA_KEY_FILE]))
    except (KeyError, ValueError) as exc:
        raise ForeignSecret(f"secret {secret['metadata']['name']} holds no CA ({exc})") from None


class Credentials:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def read_ca(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """The job's CA Secret as stored (a GET by name), None when there is none."""
        meta = job["metadata"]
        return await self.client.get_or_none(core_path(meta["namespace"], "secrets", rendering.ca_secret_name(meta["name"])))

    async def create_ca(self, job: dict[str, Any]) -> KeyPair:
        """Make the job's CA and store it in its Secret (owned by the job). If one appeared
        meanwhile (another operator replica, a lost reply), that one is used, if it is the job's."""
        meta = job["metadata"]
        ns = meta["namespace"]
        ca = new_ca(meta["name"], ns)
        if await self.client.create(core_path(ns, "secrets"), rendering.render_ca_secret(job, ca)) is not None:
            return ca
        stored = await self.read_ca(job)
        if stored is None or classify(stored, job) is not CaSecret.OURS:
            raise ForeignSecret(f"secret {rendering.ca_secret_name(meta['name'])} appeared meanwhile and is not "
                                f"owned by job {meta['name']}")
        return key_pair(stored)

    async def rotate(self, job: dict[str, Any], ca: KeyPair, replica: Replica) -> None:
        """Write a fresh key and certificate for `replica` into its own Secret (created, else
        replaced whole: the old key, if any, is never reused). Call before creating its pod."""
        assert replica.identity is not None, replica.name
        own = issue(ca, replica.identity, replica.dns_names)
        body = rendering.render_tls_secret(job, replica, ca.certificate, own)
        ns = job["metadata"]["namespace"]
        if await self.client.create(core_path(ns, "secrets"), body) is None:
            await self.client.replace(core_path(ns, "secrets", body["metadata"]["name"]), body)
