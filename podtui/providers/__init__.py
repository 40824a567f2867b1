"""Where pods live: Runpod (REST v2), SSH hosts the user added, and this machine.

`base` has the Provider interface and the dataclasses every caller sees; `runpod` talks to
Runpod's REST v2 API through `runpod_api`; `ssh_host` and `local` reach `remote-agent` (over SSH,
or through a local bridge, `local_daemon`) and build their pods from its status (`agent_pod`).
"""

from podtui.providers.base import (GpuType, LogLine, Pod, PodNotFound, PodSpec, Provider, ProviderError,
                                   SshEndpoint)

__all__ = ["GpuType", "LogLine", "Pod", "PodNotFound", "PodSpec", "Provider", "ProviderError", "SshEndpoint"]
