"""Where pods live: Runpod (REST v2) today; any SSH host and this machine are planned.

`base` has the Provider interface and the dataclasses every caller sees; `runpod` talks to
Runpod's REST v2 API through `runpod_api`.
"""

from podtui.providers.base import (GpuType, LogLine, Pod, PodNotFound, PodSpec, Provider, ProviderError,
                                   SshEndpoint)

__all__ = ["GpuType", "LogLine", "Pod", "PodNotFound", "PodSpec", "Provider", "ProviderError", "SshEndpoint"]
