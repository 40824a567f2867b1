"""SSH: host-key pins, connections, supervised tunnels and the agent's exec channel. No textual."""

import sys

# paramiko imports `invoke` (and with it unittest.mock and yaml) only for ssh_config's
# "Match exec", which podtui never uses; marking it absent takes 0.17 s off every podtui start
# that connects (measured: `import paramiko` 0.45 s -> 0.28 s on the 2-core test machine).
# Here, so that it holds whichever podtui.ssh module imports paramiko first.
sys.modules.setdefault("invoke", None)
