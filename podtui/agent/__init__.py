"""Speak remote_agent's JSON-lines protocol (contract B) over any channel.

`client.AgentClient` works over anything that opens a `Channel` (`client.ChannelOpener`): an SSH
exec channel (podtui.ssh.connection.SshConnection) or a local `remote-agent rpc` subprocess
(`local_bridge.LocalBridge`). Nothing here decides which one reaches a pod: podtui.services does.
"""
