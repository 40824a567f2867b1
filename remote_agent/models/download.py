"""Downloads from Hugging Face (being built: issue #3 item 4)."""

from remote_agent.models.errors import ModelError


def fetch(ref, models_dir, *, token=None, on_progress=None, cancel=None):
    raise ModelError("network", f"downloading {ref.describe()} from Hugging Face is not built yet; "
                                "give a local path to a GGUF file for now.")
