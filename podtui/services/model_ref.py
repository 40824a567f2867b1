"""The MODEL check of the launch screen and `podtui launch`, before anything is sent anywhere
(a pod created with a MODEL its agent refuses bills without ever serving).

It asks the agent's own parser (remote_agent/models/refs.py, stdlib only) so the screen and the
pod can never disagree about which forms are valid. No MODEL_DIR exists on the client, so a bare
file name (valid on a pod that already has that file) is refused here: a new pod has no files yet.
"""

from __future__ import annotations

from remote_agent.models.errors import ModelError
from remote_agent.models.refs import parse_model_ref


def model_problem(text: str) -> str | None:
    """None when MODEL is valid, else the agent's message naming the problem and the forms."""
    try:
        parse_model_ref(text)
    except ModelError as error:
        return str(error)
    return None
