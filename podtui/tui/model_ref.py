"""A syntax check of MODEL for the launch screen, before anything is sent anywhere.

The pod's agent does the real parsing and download (remote_agent/models/refs.py); podtui may not
import it (ARCHITECTURE: podtui imports only remote_agent.protocol), so this mirrors only the
forms' shape to catch typos early. Returns a message naming the problem and the accepted forms.
"""

from __future__ import annotations

import re

FORMS = ("a Hugging Face URL, org/repo, org/repo:QUANT (e.g. org/repo:Q4_K_M), "
         "org/repo/path/file.gguf, or a path on the pod (/models/x.gguf)")
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO = re.compile(rf"^{_PART}/{_PART}(:{_PART})?$")
_REPO_FILE = re.compile(rf"^{_PART}/{_PART}(/{_PART})*/{_PART}\.gguf$", re.IGNORECASE)
_URL = re.compile(r"^https?://(www\.)?(huggingface\.co|hf\.co)/[^\s]+$", re.IGNORECASE)


def model_problem(text: str) -> str | None:
    """None when MODEL looks valid, else what is wrong and what forms are accepted."""
    text = text.strip()
    if not text:
        return f"MODEL is empty: give {FORMS}"
    if any(ch.isspace() for ch in text):
        return f"MODEL contains a space: give {FORMS}"
    if ".." in text.split("/") or "\\" in text:
        return "MODEL may not contain `..` or backslashes"
    if text.startswith(("/", "./", "~/", "file://")):
        return None
    if text.lower().startswith(("http://", "https://")):
        return None if _URL.match(text) else \
            "only huggingface.co / hf.co URLs can be downloaded; give " + FORMS
    if _REPO.match(text) or _REPO_FILE.match(text):
        return None
    return f"{text!r} is not a MODEL podtui understands: give {FORMS}"
