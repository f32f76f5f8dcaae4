"""The options of ``avlm serve``: one dataclass, where every default lives (the command reads them for ``--help``).

Standard library only: ``avlm serve --help`` imports this module without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServeSettings:
    """How the server answers: names, limits, media access and batching."""

    model_name: str
    """The name clients put in ``model``; a request naming another model gets a 404."""
    api_key: str | None = None
    """When set, every ``/v1`` request needs ``Authorization: Bearer <key>`` (else 401). ``/health`` stays open."""
    media_root: Path | None = None
    """Local media (``file://`` URLs and plain paths) is read only from inside this folder, symlinks resolved; None
    refuses every local path (data: URLs still work)."""
    allow_remote_media: bool = False
    """Fetch ``http(s)://`` media (size-capped, with a timeout, no redirects; private and loopback hosts refused)."""
    max_media_mb: float = 50.0
    """Largest media item, decoded (data: URLs, input_audio, downloads); the request body may hold two plus text."""
    remote_timeout_s: float = 10.0
    """Connect and read timeout of a remote media download, in seconds."""
    max_batch_size: int = 8
    """Requests generated together in one ``generate`` call."""
    batch_wait_ms: float = 10.0
    """How long the first request of a batch waits for others to join it."""
    decode_workers: int | None = None
    """Threads decoding and preprocessing media (decord, PyAV, torch and Pillow release the GIL); default one per
    CPU core but one, at least 1, at most 8."""
    threads: int | None = None
    """Torch threads of the generating thread; default on CPU the cores the decoding threads leave free (at least
    1), on a GPU torch's default. Each decoding thread runs one torch thread."""
    max_tokens: int = 1024
    """Default ``max_tokens`` of a request, and the most one may ask for."""
    max_num_frames: int = 128
    """The most frames a request may ask for in ``mm_processor_kwargs.num_frames``."""
    max_queued: int = 256
    """Requests admitted at once (decoding, queued or generating); more get a 503 until some finish."""

    def __post_init__(self) -> None:
        counts = ("max_batch_size", "decode_workers", "threads", "max_tokens", "max_num_frames", "max_queued")
        errors = [f"{name}={getattr(self, name)!r} must be >= 1" for name in counts
                  if getattr(self, name) is not None and getattr(self, name) < 1]
        errors += [f"{name}={getattr(self, name)!r} must be > 0" for name in ("max_media_mb", "remote_timeout_s")
                   if not getattr(self, name) > 0]
        if self.batch_wait_ms < 0:
            errors.append(f"batch_wait_ms={self.batch_wait_ms!r} must be >= 0")
        if not self.model_name:
            errors.append("model_name must not be empty")
        if self.api_key is not None and not self.api_key:
            errors.append("api_key must not be empty (leave it unset to serve without a key)")
        if self.media_root is not None and not Path(self.media_root).is_dir():
            errors.append(f"media_root={str(self.media_root)!r} is not a folder")
        if errors:
            raise ValueError("invalid serve settings: " + "; ".join(errors))

    @property
    def max_media_bytes(self) -> int:
        return int(self.max_media_mb * 1024 * 1024)

    @property
    def max_body_bytes(self) -> int:
        """Largest request body: two media items in base64 (4/3 of their size) plus 1 MiB of text."""
        return 2 * (self.max_media_bytes * 4 // 3 + 4) + 1024 * 1024
