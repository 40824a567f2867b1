"""The agent's cluster methods (a mixin of server/handlers.Agent, which gives it settings, role and links).

- `cluster.link` (server role): write the cluster key (0600) and the backends' pinned host keys under
  the state dir, then (re)start one link per backend; answers {"links": [link snapshots]} once each is
  up or refused, or after `wait_s` (default 20).
- `cluster.unlink` (server role): stop the links and delete the key; {"links": []}.
- `cluster.authorize` (backend role): put the cluster's public key in authorized_keys, limited to
  forwarding this backend's RPC port and forcing the link's session (links/authorized.py,
  links/session.py: it reports each new ggml-rpc-server to the server's link); without public_key, remove it.
  Answers {"authorized_keys": path, "permitopen": "bind:port", "installed": bool}.
`budgets_mib` (optional, MiB per RPC device: the backends' APP_MEM) becomes the fit's budget per RPC device when a
fit.search or ctx auto names none. The links survive a daemon restart: their specs are kept in state_dir/links/links.json.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from remote_agent.engine.orphan import RECORD_FILE
from remote_agent.engine.roles import BACKEND, ENGINE, NONE, SERVER
from remote_agent.links.authorized import (
    AuthorizeError,
    install,
    key_line,
    session_command,
)
from remote_agent.links.spec import LinkParamError, LinkSpec, parse_links

log = logging.getLogger("remote_agent.links")
DEFAULT_WAIT_S = 20.0


class LinkMethods:
    """Mixed into Agent: needs self.settings (authorized_keys), self.role and self.links (a LinkSet)."""

    async def cluster_link(self, params: dict, emit) -> dict:
        """`cluster.link`; raises RoleRefused off the server role, LinkParamError (bad_params)."""
        self.role.refuse(BACKEND, NONE, ENGINE)
        links, known_hosts, key = parse_links(params)
        backends = {str(b) for b in self.role.settings.backends}
        strays = [link.endpoint for link in links if link.endpoint not in backends]
        if strays:
            raise LinkParamError(f"{', '.join(strays)} is not in this server's APP_RPC_BACKENDS "
                                 f"({self.role.settings.rpc_list}); link each backend to one of those endpoints")
        budgets = _budgets(params.get("budgets_mib"), len(links))
        await self.links.stop()
        await asyncio.to_thread(self.links.write_secrets, known_hosts, key)
        (self.links.dir / "links.json").write_text(json.dumps({"links": [link.to_dict() for link in links],
                                                               "budgets_mib": budgets}))
        self.role.link_budgets_mib = tuple(budgets) if budgets else None
        await self.links.replace(links)
        await self.links.wait_settled(float(params.get("wait_s") or DEFAULT_WAIT_S))
        return {"links": self.links.snapshot()}

    async def cluster_unlink(self, params: dict, emit) -> dict:
        """`cluster.unlink`: stop the links, delete the key, known_hosts and the saved specs."""
        self.role.refuse(BACKEND, NONE, ENGINE)
        await self.links.forget()
        (self.links.dir / "links.json").unlink(missing_ok=True)
        return {"links": []}

    async def cluster_authorize(self, params: dict, emit) -> dict:
        """`cluster.authorize`; raises RoleRefused off the backend role, AuthorizeError as bad_params."""
        from remote_agent.protocol import BAD_PARAMS, WireError
        self.role.refuse(SERVER, NONE, ENGINE)
        s = self.role.settings
        path = self.settings.authorized_keys
        try:
            command = session_command(sys.executable, self.settings.state_dir / RECORD_FILE)
            line = key_line(params["public_key"], s.bind, s.port, command) if params.get("public_key") else None
        except AuthorizeError as exc:
            raise WireError(BAD_PARAMS, f"cluster.authorize: {exc}") from None
        await asyncio.to_thread(install, path, line)
        log.info("cluster key %s in %s (forwarding to %s:%d only)", "authorized" if line else "removed", path,
                 s.bind, s.port)
        return {"authorized_keys": str(path), "permitopen": f"{s.bind}:{s.port}", "installed": line is not None}

    async def restore_links(self) -> None:
        """At daemon start (server role): the links cluster.link last set, when their files are still there."""
        saved = self.links.dir / "links.json"
        if not (saved.exists() and self.links.key_file.exists() and self.links.known_hosts.exists()):
            return
        try:
            data = json.loads(saved.read_text())
            specs = tuple(LinkSpec(**item) for item in data["links"])
            budgets = _budgets(data.get("budgets_mib"), len(specs))
        except (ValueError, TypeError, KeyError, LinkParamError) as exc:
            log.warning("cannot restore the links from %s (%s); run `podtui cluster link` again", saved, exc)
            return
        log.info("restoring %d link(s) from %s", len(specs), saved)
        self.role.link_budgets_mib = tuple(budgets) if budgets else None
        await self.links.replace(specs)


def _budgets(value, count: int) -> list[int] | None:
    """budgets_mib of cluster.link: MiB per RPC device (each backend's APP_MEM, one per device it lends), in
    link order: at least one per link, or None. The fit checks the count against the devices it finds
    (fit/devices.py) and says which budget is missing or extra."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) < count or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise LinkParamError(f"budgets_mib must be at least {count} positive integers, MiB per RPC device "
                             "in link order")
    return value
