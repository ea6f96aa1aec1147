"""The nine emotion labels of emotion2vec+, their display emoji, and token parsing."""

from __future__ import annotations

# Canonical English names in the model's output order (funasr tokens.txt order).
LABELS: tuple[str, ...] = (
    "angry",
    "disgusted",
    "fearful",
    "happy",
    "neutral",
    "other",
    "sad",
    "surprised",
    "unknown",
)

EMOJI: dict[str, str] = {
    "angry": "😠",
    "disgusted": "🤢",
    "fearful": "😨",
    "happy": "😊",
    "neutral": "😐",
    "other": "🤔",
    "sad": "😢",
    "surprised": "😲",
    "unknown": "❓",
}

# The tokens.txt shipped with emotion2vec+ checkpoints (bilingual, as funasr reads them).
PLUS_TOKENS: tuple[str, ...] = (
    "生气/angry",
    "厌恶/disgusted",
    "恐惧/fearful",
    "开心/happy",
    "中立/neutral",
    "其他/other",
    "难过/sad",
    "吃惊/surprised",
    "<unk>",
)


def token_to_label(token: str) -> str:
    """Map a funasr token such as '厌恶/disgusted' or '<unk>' to its English label."""
    if token in ("<unk>", "unk"):
        return "unknown"
    return token.rsplit("/", 1)[-1].strip().lower()


def is_unused(token: str) -> bool:
    """True for placeholder tokens that funasr masks out of the softmax ('unuse_*')."""
    return token.startswith("unuse")


def with_emoji(label: str) -> str:
    """Return the label prefixed by its emoji, as the seed's WebUI shows it."""
    return f"{EMOJI.get(label, '')} {label}".strip()
