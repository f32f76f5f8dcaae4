"""Media references -> local files the decoders can open, with the server's safety rules.

- ``file://`` URLs and plain paths: only inside the media root, after resolving ``..`` and symlinks (the real path is
  what gets decoded, so a link swapped later cannot lead outside); no media root refuses them all (403).
- ``data:`` URLs (base64) and ``input_audio``: size-capped before decoding (413), corrupt base64 is a 400; the
  bytes go to a scratch file (the decoders read files), deleted once the request is decoded.
- ``http(s)://``: refused (403) unless remote media is allowed; then fetched with a timeout and a size cap, without
  following redirects, and only from public addresses (no loopback, private or link-local hosts).

Each error names the request field and what the client sent, never a server path.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from avlm.constants import IMAGE_SUFFIXES
from avlm.serving.content import MediaRef
from avlm.serving.errors import APIError, bad_request
from avlm.serving.settings import ServeSettings

AUDIO_FORMATS = ("wav", "mp3", "flac", "ogg", "opus", "m4a", "aac", "webm")
DEFAULT_SUFFIX = {"video": ".mp4", "image": ".png", "audio": ".wav"}
MIME_SUFFIX = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp", "tiff": ".tiff",
               "mp4": ".mp4", "webm": ".webm", "quicktime": ".mov", "x-matroska": ".mkv", "wav": ".wav",
               "x-wav": ".wav", "wave": ".wav", "mpeg": ".mp3", "mp3": ".mp3", "flac": ".flac", "ogg": ".ogg"}


@dataclass(frozen=True)
class LocalMedia:
    path: str
    """The file to decode."""
    label: str
    """How errors name it: what the client sent (a path, a URL, or ``data: URL in <field>``)."""
    scratch: bool = False
    """A scratch copy (data: URL or download), deleted after decoding."""


class MediaResolver:
    """Turns a :class:`MediaRef` into a :class:`LocalMedia` under the rules of the module docstring."""

    def __init__(self, settings: ServeSettings, scratch_dir: str | os.PathLike) -> None:
        self.settings = settings
        self.root = None if settings.media_root is None else os.path.realpath(settings.media_root)
        self.scratch_dir = os.fspath(scratch_dir)

    def resolve(self, ref: MediaRef) -> LocalMedia:
        if ref.audio_format is not None:
            if ref.audio_format not in AUDIO_FORMATS:
                raise bad_request(f"input_audio format {ref.audio_format!r} is not supported; use one of "
                                  f"{', '.join(AUDIO_FORMATS)}", ref.param.replace(".data", ".format"))
            return self._write(self._decode_base64(ref.url, ref), f".{ref.audio_format}", ref, "input_audio data")
        has_scheme = "://" in ref.url or ref.url.startswith("data:")
        scheme = urllib.parse.urlsplit(ref.url).scheme.lower() if has_scheme else ""
        if scheme == "data":
            return self._data_url(ref)
        if scheme in ("", "file"):
            return self._local(ref)
        if scheme in ("http", "https"):
            return self._remote(ref)
        raise bad_request(f"{ref.param}: unsupported URL scheme {scheme!r}; use a file path, file://, data: or "
                          "http(s)://", ref.param, "unsupported_url")

    def _local(self, ref: MediaRef) -> LocalMedia:
        given = ref.url
        if given.startswith("file://"):
            parts = urllib.parse.urlsplit(given)
            if parts.netloc not in ("", "localhost"):
                raise bad_request(f"{ref.param}: file URL {given!r} names host {parts.netloc!r}; only local files "
                                  "(file:///path) are read", ref.param, "unsupported_url")
            given = urllib.parse.unquote(parts.path)
        if self.root is None:
            raise APIError(403, f"{ref.param}: local files are refused by this server (it was started without "
                                "--media-root); send the media as a data: URL instead", ref.param,
                           "local_media_disabled")
        if "\x00" in given:
            raise bad_request(f"{ref.param}: the path contains a NUL character", ref.param)
        real = os.path.realpath(os.path.join(self.root, given))  # an absolute `given` replaces the root
        if os.path.commonpath([real, self.root]) != self.root:
            raise APIError(403, f"{ref.param}: {given!r} is outside the media root (after resolving '..' and "
                                "symlinks); only files under the server's --media-root are read", ref.param,
                           "media_outside_root")
        if not os.path.exists(real):
            raise bad_request(f"{ref.param}: {given!r}: no such file under the media root", ref.param,
                              "media_not_found")
        if not os.path.isfile(real):
            raise bad_request(f"{ref.param}: {given!r} is not a file", ref.param, "media_not_found")
        return LocalMedia(real, given)

    def _data_url(self, ref: MediaRef) -> LocalMedia:
        header, comma, payload = ref.url[len("data:"):].partition(",")
        if not comma or not header.endswith(";base64"):
            raise bad_request(f"{ref.param}: a data: URL must be data:<mime type>;base64,<data>", ref.param,
                              "invalid_data_url")
        mime = header[: -len(";base64")].split(";")[0].lower()
        subtype = mime.partition("/")[2]
        suffix = MIME_SUFFIX.get(subtype, DEFAULT_SUFFIX[ref.kind])
        if ref.kind == "image" and suffix not in IMAGE_SUFFIXES:
            suffix = DEFAULT_SUFFIX["image"]  # an image part is read as an image, whatever its MIME type says
        return self._write(self._decode_base64(payload, ref), suffix, ref, f"data: URL in {ref.param}")

    def _decode_base64(self, payload: str, ref: MediaRef) -> bytes:
        payload = "".join(payload.split())
        if len(payload) * 3 // 4 > self.settings.max_media_bytes + 3:
            raise APIError(413, f"{ref.param}: the media is about {len(payload) * 3 // 4 / 2**20:.1f} MiB; this "
                                f"server takes up to {self.settings.max_media_mb:g} MiB per item (--max-media-mb)",
                           ref.param, "media_too_large")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as error:
            raise bad_request(f"{ref.param}: corrupt base64 data ({error})", ref.param, "invalid_base64") from None

    def _write(self, data: bytes, suffix: str, ref: MediaRef, label: str) -> LocalMedia:
        if not data:
            raise bad_request(f"{ref.param}: the media data is empty", ref.param, "invalid_media")
        handle, path = tempfile.mkstemp(suffix=suffix, dir=self.scratch_dir)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        return LocalMedia(path, label, scratch=True)

    def _remote(self, ref: MediaRef) -> LocalMedia:
        if not self.settings.allow_remote_media:
            raise APIError(403, f"{ref.param}: remote media (http/https) is refused by this server; send a data: URL, "
                                "or start it with --allow-remote-media", ref.param, "remote_media_disabled")
        data = fetch(ref.url, self.settings.max_media_bytes, self.settings.remote_timeout_s, ref.param)
        suffix = Path(urllib.parse.urlsplit(ref.url).path).suffix.lower() or DEFAULT_SUFFIX[ref.kind]
        if ref.kind == "image" and suffix not in IMAGE_SUFFIXES:
            suffix = DEFAULT_SUFFIX["image"]
        return self._write(data, suffix if len(suffix) <= 6 else DEFAULT_SUFFIX[ref.kind], ref, ref.url)


def fetch(url: str, max_bytes: int, timeout_s: float, param: str, allow_private: bool = False) -> bytes:
    """GET ``url`` (no redirects) into memory, at most ``max_bytes``, within ``timeout_s`` in all.

    ``allow_private``: also fetch from loopback/private addresses (tests only; a server never sets it).
    """
    host = urllib.parse.urlsplit(url).hostname or ""
    if not allow_private:
        _check_public(host, param)
    opener = urllib.request.build_opener(_NoRedirect)
    deadline = time.monotonic() + timeout_s
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "avlm-serve"}), timeout=timeout_s) as reply:
            declared = reply.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise _too_large(int(declared), max_bytes, param)
            chunks, size = [], 0
            while chunk := reply.read(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(size, max_bytes, param)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"took longer than {timeout_s:g} s")
                chunks.append(chunk)
    except urllib.error.HTTPError as error:
        reason = "redirects are not followed" if 300 <= error.code < 400 else error.reason
        raise bad_request(f"{param}: could not fetch {url}: HTTP {error.code} ({reason})", param,
                          "media_fetch_failed") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise bad_request(f"{param}: could not fetch {url}: {reason}", param, "media_fetch_failed") from None
    return b"".join(chunks)


def _check_public(host: str, param: str) -> None:
    """Refuse hosts that resolve to loopback, private, link-local or reserved addresses (server-side request
    forgery). A name that resolves differently at connect time (DNS rebinding) is not caught here."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError) as error:
        raise bad_request(f"{param}: cannot resolve host {host!r} ({error})", param, "media_fetch_failed") from None
    private = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_global)
    if private:
        raise APIError(403, f"{param}: host {host!r} resolves to a non-public address ({', '.join(private)}); remote "
                            "media is fetched from public addresses only", param, "remote_media_forbidden")


def _too_large(size: int, limit: int, param: str) -> APIError:
    return APIError(413, f"{param}: the remote media is over {limit / 2**20:g} MiB ({size} bytes or more); raise "
                         "--max-media-mb to accept it", param, "media_too_large")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs) -> None:  # a 3xx then raises HTTPError
        return None
