"""The messages of a chat request -> one question, an optional system prompt and at most one visual and one audio.

Content parts, as vLLM accepts them: ``{"type": "text", "text": ...}``, ``{"type": "video_url", "video_url": {"url":
...}}``, ``image_url`` and ``audio_url`` alike (the value may also be the URL string), and ``{"type": "input_audio",
"input_audio": {"data": <base64>, "format": "wav"}}``. The model takes one video (or image) and one audio per sample
and puts their tokens before the question, wherever the parts stand; text parts are joined with newlines.

A conversation is optional system (or developer) messages and then one user message; earlier assistant turns are
refused (this server answers single questions, as ``avlm ask`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from avlm.serving.errors import bad_request

MEDIA_PARTS = {"video_url": "video", "image_url": "image", "audio_url": "audio", "input_audio": "audio"}
PART_TYPES = ("text", *MEDIA_PARTS)


@dataclass(frozen=True)
class MediaRef:
    """One media part of the request, before it is fetched."""

    kind: Literal["video", "image", "audio"]
    url: str
    """``file://`` URL, plain path, ``data:`` URL or ``http(s)://`` URL; for ``input_audio`` the base64 data."""
    param: str
    """Where it is in the request (``messages[1].content[0].video_url.url``), for error messages."""
    audio_format: str | None = None
    """``input_audio`` only: its ``format`` (``wav``, ``mp3``, ...); ``url`` is then bare base64."""


@dataclass(frozen=True)
class Conversation:
    question: str
    system: str | None = None
    visual: MediaRef | None = None
    """The video or image."""
    audio: MediaRef | None = None
    """A separate audio (replaces the video's own soundtrack)."""


def parse_messages(messages: list[dict[str, Any]]) -> Conversation:
    """Read the messages; anything this server cannot answer faithfully is a 400 that says why."""
    systems: list[str] = []
    user: list[Any] | None = None
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        if role in ("system", "developer"):
            if user is not None:
                raise bad_request(f"{where}: a {role} message after the user message is not supported", where)
            systems.append(_system_text(message.get("content"), f"{where}.content"))
        elif role == "user":
            if user is not None:
                raise bad_request(f"{where}: only one user message is supported (one question per request)", where)
            user = [index, message.get("content")]
        elif role in ("assistant", "tool", "function"):
            raise bad_request(f"{where}: {role} messages are not supported: this server answers one question per "
                              "request (send the system message, if any, and one user message)", where)
        else:
            raise bad_request(f"{where}.role: {role!r} is not one of 'system', 'developer', 'user'", f"{where}.role")
    if user is None:
        raise bad_request("messages has no user message", "messages")
    return _user_content(*user, system="\n".join(systems) if systems else None)


def _user_content(index: int, content: Any, system: str | None) -> Conversation:
    where = f"messages[{index}].content"
    if isinstance(content, str):
        return Conversation(content, system)
    if not isinstance(content, list) or not content:
        raise bad_request(f"{where} must be a string or a non-empty list of content parts", where)
    texts: list[str] = []
    media: dict[str, MediaRef] = {}
    for number, part in enumerate(content):
        here = f"{where}[{number}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(_text(part, here))
        elif kind in MEDIA_PARTS:
            ref = _media(part, kind, here)
            slot = "audio" if ref.kind == "audio" else "visual"
            if slot in media:
                what = "audio" if slot == "audio" else "video or image"
                raise bad_request(f"too many media parts: {here} is a second {what} ({media[slot].param} came first); "
                                  "the model takes at most one video or image and one audio per request", here,
                                  "too_many_media_parts")
            media[slot] = ref
        else:
            shown = repr(kind) if kind is not None else "missing"
            raise bad_request(f"{here}.type: unknown content type {shown}; supported: {', '.join(PART_TYPES)}",
                              f"{here}.type", "unknown_content_type")
    if not texts and not media:
        raise bad_request(f"{where} has neither text nor media", where)
    return Conversation("\n".join(texts), system, media.get("visual"), media.get("audio"))


def _media(part: dict[str, Any], kind: str, where: str) -> MediaRef:
    value = part.get(kind)
    if kind == "input_audio":
        if not isinstance(value, dict) or not isinstance(value.get("data"), str) or not value["data"]:
            raise bad_request(f"{where}.input_audio must be {{\"data\": <base64>, \"format\": \"wav\" | \"mp3\" | "
                              "...}", f"{where}.input_audio")
        audio_format = value.get("format")
        if not isinstance(audio_format, str) or not audio_format:
            raise bad_request(f"{where}.input_audio.format must name the audio format ('wav', 'mp3', ...)",
                              f"{where}.input_audio.format")
        return MediaRef("audio", value["data"], f"{where}.input_audio.data", audio_format.lower())
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise bad_request(f"{where}.{kind} must be {{\"url\": \"...\"}} (file path, file://, data: or http(s) URL)",
                          f"{where}.{kind}")
    return MediaRef(MEDIA_PARTS[kind], url, f"{where}.{kind}.url")  # type: ignore[arg-type]


def _text(part: dict[str, Any], where: str) -> str:
    if not isinstance(part.get("text"), str):
        raise bad_request(f"{where}.text must be a string", f"{where}.text")
    return part["text"]


def _system_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "\n".join(_text(part, f"{where}[{number}]") for number, part in enumerate(content))
    raise bad_request(f"{where} must be a string or a list of text parts (no media in system messages)", where)
