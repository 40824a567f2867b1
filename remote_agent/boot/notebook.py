"""Boot's Jupyter step (pod mode only; remote_agent/jupyter.py has the why).

Serverless mode never reaches this module: Boot.start_serverless starts only the daemon and the worker.
Standard library only.
"""

from __future__ import annotations

import shlex
import threading
from pathlib import Path

from remote_agent import jupyter
from remote_agent.boot.config import BootConfig
from remote_agent.boot.steps import BootError, Reporter
from remote_agent.jupyter import JupyterConfig, JupyterError, JupyterSupervisor


def jupyter_config(cfg: BootConfig) -> JupyterConfig | None:
    """The Jupyter the pod's environment asks for (JUPYTER=1 or JUPYTER_PASSWORD), None when none.
    Raises BootError for a bad JUPYTER_* value."""
    try:
        return jupyter.config_from_env(cfg.env, cfg.volume_dir, cfg.state_dir)
    except JupyterError as exc:
        raise BootError(str(exc), "fix the variable in the pod's settings and restart the pod") from None


def start_jupyter(cfg: BootConfig, rep: Reporter, shutdown: threading.Event) -> JupyterSupervisor | None:
    """Prepare the token and config (0600, in the state dir on the volume) and start the supervisor thread;
    in a dry run print the command instead. None when Jupyter is not wanted or in a dry run. The token is
    never printed: `podtui tunnel POD --jupyter` fetches it over the verified connection."""
    jcfg = jupyter_config(cfg)
    if jcfg is None:
        rep.step("Jupyter is off (set JUPYTER=1 or JUPYTER_PASSWORD to run Jupyter Lab on the pod's 127.0.0.1:8888)")
        if not cfg.dry_run:  # a state left by an earlier boot with JUPYTER=1 would show in status
            jupyter.clear_state(cfg.state_dir)
        return None
    how = "its token" + (" or JUPYTER_PASSWORD" if jcfg.password else "")
    if cfg.dry_run:
        rep.would(f"write Jupyter's token into {jcfg.token_path} and its config into {jcfg.config_path} (mode 0600)")
        rep.would(f"start Jupyter on 127.0.0.1:{jcfg.port} only (needs {how}; notebooks in {jcfg.root_dir}): "
                  f"{shlex.join(jcfg.command())}")
        return None
    if not Path(jcfg.bin).is_file():
        rep.warn(f"JUPYTER is set but Jupyter is not installed at {jcfg.bin}: Jupyter is not started (the podtui "
                 "image installs it in /opt/jupyter; elsewhere set JUPYTER_BIN to a jupyter-lab)")
        jupyter.clear_state(cfg.state_dir)
        return None
    try:
        jcfg.root_dir.mkdir(parents=True, exist_ok=True)
        token = jupyter.ensure_token(jcfg.state_dir)
        jupyter.write_config(jcfg, token)
    except (OSError, JupyterError) as exc:
        rep.warn(f"Jupyter is not started: {exc}")
        return None
    rep.secrets.append(token)
    rep.step(f"starting Jupyter on 127.0.0.1:{jcfg.port} only (needs {how}; notebooks in {jcfg.root_dir}): "
             f"{shlex.join(jcfg.command())}")
    rep.step(f"open it with:  podtui tunnel {cfg.pod_id} --jupyter   (prints the URL with its token)")
    supervisor = JupyterSupervisor(jcfg, rep.raw)
    threading.Thread(target=supervisor.run, args=(shutdown,), name="jupyter", daemon=True).start()
    return supervisor

