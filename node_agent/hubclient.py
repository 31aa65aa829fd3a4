"""HTTP client for the hub's node API over mutual TLS."""

from __future__ import annotations

from typing import Any

import httpx

from certs.tls import client_ssl_context
from node_agent.identity import AgentIdentity
from wire.api import (
    BundleStatus,
    DeliveryList,
    Heartbeat,
    OrgKeys,
    RenewRequest,
    RenewResponse,
)
from wire.collection_key import CollectionKey
from wire.policy import SitePolicy
from wire.query_api import Answerers, Inbox, RequestKind, RequestStatus
from wire.receipt import Receipt


class HubRefused(Exception):
    """The hub answered with a 4xx: retrying the same request will not help."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"hub refused ({status}): {detail}")
        self.status = status
        self.detail = detail


class HubUnavailable(Exception):
    """Network error or 5xx: retry later."""


class HubClient:
    def __init__(self, node_url: str, identity: AgentIdentity, timeout: float = 30.0) -> None:
        self._node_url = node_url.rstrip("/")
        self._timeout = timeout
        self._client = self._make_client(identity)

    def _make_client(self, identity: AgentIdentity) -> httpx.Client:
        context = client_ssl_context(
            identity.ca_file, cert_file=identity.cert_file, key_file=identity.key_file
        )
        return httpx.Client(base_url=self._node_url, verify=context, timeout=self._timeout)

    def reload(self, identity: AgentIdentity) -> None:
        """Use the identity's (renewed) certificate for new connections."""
        old, self._client = self._client, self._make_client(identity)
        old.close()

    def renew(self, request: RenewRequest) -> RenewResponse:
        response = self._request("POST", "/node/v1/renew", json=request.model_dump(mode="json"))
        return RenewResponse.model_validate(response.json())

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"{type(exc).__name__} talking to the hub") from exc
        if response.status_code >= 500:
            raise HubUnavailable(f"hub error {response.status_code}")
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail", ""))
            except ValueError:
                detail = response.text[:200]
            raise HubRefused(response.status_code, detail)
        return response

    def policy(self) -> SitePolicy:
        return SitePolicy.model_validate(self._request("GET", "/node/v1/policy").json())

    def org_keys(self, org: str) -> OrgKeys:
        return OrgKeys.model_validate(self._request("GET", f"/node/v1/orgs/{org}/keys").json())

    def collection_key(self, name: str) -> CollectionKey:
        """A research collection's public key, as the hub signed it (issue 11)."""
        response = self._request("GET", f"/node/v1/collections/{name}/key")
        return CollectionKey.model_validate(response.json())

    def put_header(self, bundle_id: str, header: bytes) -> BundleStatus:
        response = self._request(
            "PUT",
            f"/node/v1/bundles/{bundle_id}",
            content=header,
            headers={"content-type": "application/octet-stream"},
        )
        return BundleStatus.model_validate(response.json())

    def bundle_status(self, bundle_id: str) -> BundleStatus:
        return BundleStatus.model_validate(
            self._request("GET", f"/node/v1/bundles/{bundle_id}").json()
        )

    def put_chunk(self, bundle_id: str, index: int, data: bytes) -> None:
        self._request(
            "PUT",
            f"/node/v1/bundles/{bundle_id}/chunks/{index}",
            content=data,
            headers={"content-type": "application/octet-stream"},
        )

    def complete(self, bundle_id: str) -> Receipt:
        return Receipt.model_validate(
            self._request("POST", f"/node/v1/bundles/{bundle_id}/complete").json()
        )

    def deliveries(self) -> DeliveryList:
        return DeliveryList.model_validate(self._request("GET", "/node/v1/deliveries").json())

    def delivery_header(self, bundle_id: str) -> bytes:
        return self._request("GET", f"/node/v1/deliveries/{bundle_id}/header").content

    def delivery_chunk(self, bundle_id: str, index: int) -> bytes:
        return self._request("GET", f"/node/v1/deliveries/{bundle_id}/chunks/{index}").content

    def ack(self, bundle_id: str) -> None:
        self._request("POST", f"/node/v1/deliveries/{bundle_id}/ack")

    def heartbeat(self, beat: Heartbeat) -> None:
        self._request("POST", "/node/v1/heartbeat", json=beat.model_dump(mode="json"))

    # -- federated requests (hub/api/requests_api.py) -------------------------------------

    def submit_request(
        self, request_id: str, kind: RequestKind, targets: list[str], sealed: bytes, hold: bool
    ) -> RequestStatus:
        response = self._request(
            "PUT",
            f"/node/v1/requests/{request_id}",
            params={"to": targets, "kind": kind, "hold": "true" if hold else "false"},
            content=sealed,
            headers={"content-type": "application/octet-stream"},
        )
        return RequestStatus.model_validate(response.json())

    def request_inbox(self, wait: float) -> Inbox:
        """Requests for this organization; the hub holds the call up to `wait` seconds."""
        response = self._request(
            "GET", "/node/v1/requests/inbox", params={"wait": wait}, timeout=wait + self._timeout
        )
        return Inbox.model_validate(response.json())

    def put_answer(
        self, request_id: str, outcome: str, count: int | None, sealed: bytes, done: int | None
    ) -> None:
        params: dict[str, str | int] = {"outcome": outcome}
        if count is not None:
            params["count"] = count
        if done is not None:
            params["done"] = done
        self._request(
            "PUT",
            f"/node/v1/requests/{request_id}/answer",
            params=params,
            content=sealed,
            headers={"content-type": "application/octet-stream"},
        )

    def request_status(
        self, request_id: str, wait: float = 0.0, seen: str = ""
    ) -> tuple[RequestStatus, str]:
        """The status and sealed answers; with `wait`, held until it changes from `seen`."""
        response = self._request(
            "GET",
            f"/node/v1/requests/{request_id}",
            params={"wait": wait, "seen": seen},
            timeout=wait + self._timeout,
        )
        progress = response.headers.get("x-hexchange-progress", "")
        return RequestStatus.model_validate(response.json()), progress

    def answerers(self) -> list[str]:
        """Organizations whose sharing policy sends studies (identified or de-identified) here."""
        return Answerers.model_validate(
            self._request("GET", "/node/v1/requests/answerers").json()
        ).orgs
