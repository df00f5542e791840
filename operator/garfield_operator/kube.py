"""A small async Kubernetes REST client over aiohttp, authenticated like kopf itself.

kopf has no public client for objects other than the one it hands to a handler. Why not the
`kubernetes` package: it is synchronous (a thread per in-flight call) and adds 22 MB of resident
memory once its API classes load (docs/operator.md, "What is kopf's and what is ours"); the
operator only needs create/get/list/patch/replace/delete on a handful of resources, and kopf already ships
aiohttp. Credentials come from kopf's own login functions
(service account in a pod, else the kubeconfig), so kopf and this client always talk to the same
server as the same user.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import ssl
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

from garfield_operator import constants as C

Body = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def jobs_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{C.GROUP}/{C.VERSION}/namespaces/{quote(namespace)}/{C.PLURAL}"
    return f"{base}/{quote(name)}" if name else base


def network_policies_path(namespace: str, name: str = "") -> str:
    base = f"/apis/networking.k8s.io/v1/namespaces/{quote(namespace)}/networkpolicies"
    return f"{base}/{quote(name)}" if name else base


def core_path(namespace: str, plural: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{quote(namespace)}/{plural}"
    return f"{base}/{quote(name)}" if name else base


class Client:
    """One pooled HTTP session to the apiserver; every method raises ApiError on a non-2xx reply."""

    def __init__(self, info: kopf.ConnectionInfo, *, connections: int = 32, timeout: float = 30.0) -> None:
        self.server = info.server.rstrip("/")
        self._headers = {"Accept": "application/json", **info.as_http_headers()}
        self._ssl: ssl.SSLContext | bool = info.as_ssl_context() if self.server.startswith("https") else False
        if info.insecure and isinstance(self._ssl, ssl.SSLContext):
            self._ssl.check_hostname = False
            self._ssl.verify_mode = ssl.CERT_NONE
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self.default_namespace = info.default_namespace

    @classmethod
    def from_environment(cls, settings: kopf.OperatorSettings | None = None, **kwargs: Any) -> "Client":
        settings = settings or kopf.OperatorSettings()
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
        if info is None:
            raise RuntimeError("no Kubernetes credentials: neither a service account nor KUBECONFIG/~/.kube/config")
        return cls(info, **kwargs)

    async def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
                      content_type: str = "application/json") -> Body:
        session = await self._ensure()
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with session.request(method, self.server + path, data=data, params=params, headers=headers) as resp:
            text = await resp.text()
            if resp.status >= 400:
                try:
                    payload = json.loads(text)
                    reason, message = payload.get("reason", resp.reason or ""), payload.get("message", text)
                except ValueError:
                    reason, message = resp.reason or "", text
                raise ApiError(resp.status, reason, message)
            return json.loads(text) if text else {}

    # -- verbs -----------------------------------------------------------------------------------
    async def get(self, path: str) -> Body:
        return await self.request("GET", path)

    async def get_or_none(self, path: str) -> Body | None:
        try:
            return await self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str = "") -> list[Body]:
        params = {"labelSelector": label_selector} if label_selector else None
        return list((await self.request("GET", path, params=params)).get("items") or [])

    async def create(self, path: str, body: Body) -> Body | None:
        """Create; None when an object of that name already exists (creation is idempotent)."""
        try:
            return await self.request("POST", path, body=body)
        except ApiError as exc:
            if exc.status == 409 and exc.reason == "AlreadyExists":
                return None
            raise

    async def replace(self, path: str, body: Body) -> Body:
        """Replace (PUT) the whole object, whatever its current version: for objects only we write."""
        return await self.request("PUT", path, body=body)

    async def merge_patch(self, path: str, body: Body) -> Body:
        return await self.request("PATCH", path, body=body, content_type="application/merge-patch+json")

    async def delete(self, path: str, *, uid: str = "", grace_seconds: int | None = None,
                     propagation: str = "Background") -> bool:
        """Delete; False when it is already gone (or was replaced: the uid precondition failed)."""
        options: Body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if uid:
            options["preconditions"] = {"uid": uid}
        if grace_seconds is not None:
            options["gracePeriodSeconds"] = grace_seconds
        try:
            await self.request("DELETE", path, body=options)
            return True
        except ApiError as exc:
            if exc.status in (404, 409):
                return False
            raise

    # builtins.list: in this class `list` names the LIST call above.
    async def gather(self, coros: builtins.list[Any], limit: int = 16) -> builtins.list[Any]:
        """Run calls concurrently, at most `limit` at a time; exceptions are returned, not raised."""
        sem = asyncio.Semaphore(limit)

        async def one(coro: Any) -> Any:
            async with sem:
                return await coro

        return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)
