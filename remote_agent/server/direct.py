"""`cluster.direct` (server role): the RPC endpoints of a Runpod Instant Cluster reached directly.

With `podtui cluster launch --instant --direct` the backends' ggml-rpc-server binds each node's
overlay address (APP_BIND=NODE_ADDR) and no SSH link is made. Those addresses are known only from
Runpod's API (`GET /v2/clusters/{id}/pods`, PodCluster.ip), not at boot, so podtui sends them over its
verified channel: `{"endpoints": ["10.65.0.3:50052", …], "budgets_mib"?: [MiB per RPC device]}`.
They replace APP_RPC_BACKENDS (kept in the state dir across daemon restarts: engine/cluster.py), and
llama-server restarts on them when it was started or tried before; otherwise the boot's own start
uses them. `{"endpoints": []}` goes back to APP_RPC_BACKENDS. Answers status, also when llama-server
could not start (a backend not up yet: the server is then paused, naming it in last_error).
"""

from __future__ import annotations

import logging

from remote_agent.engine.roles import BACKEND, ENGINE, NONE, RoleError, parse_backends
from remote_agent.protocol import BAD_PARAMS, WireError

log = logging.getLogger("remote_agent.direct")


class DirectMethods:
    """Mixed into Agent: needs self.role (ClusterRole), self.supervisor and self.status."""

    async def cluster_direct(self, params: dict, emit) -> dict:
        """`cluster.direct`. Raises RoleRefused off the server role, WireError bad_params for endpoints that
        are not host:port or budgets that are not positive integers."""
        self.role.refuse(BACKEND, NONE, ENGINE)   # before anything stops: only a server takes endpoints
        endpoints, budgets = params["endpoints"], params.get("budgets_mib")
        if not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints):
            raise WireError(BAD_PARAMS, "cluster.direct: endpoints must be a list of \"host:port\" strings")
        if budgets is not None and (not isinstance(budgets, list) or not budgets or not all(
                isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in budgets)):
            raise WireError(BAD_PARAMS, "cluster.direct: budgets_mib must be positive integers, MiB per RPC device")
        try:
            if endpoints:   # [] goes back to APP_RPC_BACKENDS
                parse_backends(",".join(endpoints))   # refused here, before anything stops
        except RoleError as exc:
            raise WireError(BAD_PARAMS, f"cluster.direct: {exc}") from None

        def apply() -> None:
            if endpoints:
                self.role.set_direct(endpoints, budgets)
            else:
                self.role.clear_direct()

        if self.supervisor.config is None:   # nothing started yet: the first launch reads them
            apply()
            return await self.status({}, emit)
        # The supervisor, the one owner of launches, applies them between stopping llama-server and
        # starting it again, so no launch ever sees half of the change.
        log.info("restarting llama-server on new RPC endpoints: %s", ",".join(endpoints) or "APP_RPC_BACKENDS")
        try:
            await self.supervisor.start(self.supervisor.config, emit, reconfigure=apply)
        except WireError as exc:  # a backend not up yet pauses the server; status says which (last_error)
            log.warning("llama-server did not start on the new endpoints: %s", exc.message)
        return await self.status({}, emit)
