"""Which pod image `podtui launch` uses when none is given.

Order: `--image`, then PODTUI_IMAGE, then `image` under [runpod] in the config, then the image
published for this podtui version. The release workflow (.github/workflows/release.yml) writes
that reference into the package as `_published_image.txt` (GitHub's container registry, the
repository owner, the version), and the image workflow pushes the same tag from the same commit.
A source checkout has no such file: there, launching needs an image you built and pushed
(image/README.md).
"""

from __future__ import annotations

from importlib import resources

IMAGE_NAME = "podtui-pod"
_STAMP = "_published_image.txt"


def published_image() -> str | None:
    """The image reference released with this podtui (e.g. "<registry>/<owner>/podtui-pod:0.1.0"),
    or None when this podtui was installed from a source checkout."""
    try:
        text = resources.files("podtui").joinpath(_STAMP).read_text().strip()
    except (FileNotFoundError, OSError):
        return None
    return text or None


def default_image_text() -> str:
    """For help texts: the published image, or why there is none."""
    return published_image() or "none: this podtui was installed from source; build and push image/ first"
