"""SSH: host-key pins, connections, supervised tunnels and the agent's exec channel. No textual."""
