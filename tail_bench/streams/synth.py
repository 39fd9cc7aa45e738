"""tail-synth: a generated four-domain text-audio stream standing in for TAIL.

The four domains play AudioCaps, Clotho, BBC Sound Effects and AudioSet. They differ as the
real ones do: in sound families, in recording channel, and in caption style (short event
sentences; long descriptions, five per clip; terse library labels; tag lists over mixtures).
Concepts are shared across domains, and each domain has concepts the backbone never saw in
pretraining. Pitch and tempo vary per clip and only the domain captions name them, so the
pretrained backbone retrieves above chance (concept words) but below a fine-tuned one.
Everything is a pure function of (domain, split, size, seed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from tail_bench.streams.pairs import PairSet
from tail_bench.streams.sounds import CONCEPTS, SAMPLE_RATE, Concept, lowpass, render, reverb

Event = tuple[Concept, str, str]  # concept, pitch, tempo

WORDS = {
    "event": {
        "low": ("low-pitched", "deep"), "high": ("high-pitched", "shrill"),
        "slow": ("slowly", "lazily"), "fast": ("rapidly", "quickly"),
        "sequence": ("{a} and then {b}", "{a}, followed by {b}"),
        "overlap": ("{a} while {b}", "{a} as {b}"),
    },
    "descriptive": {
        "low": ("with a low tone", "in a deep register"),
        "high": ("with a high tone", "in a high register"),
        "slow": ("at a slow, steady pace", "unhurriedly"),
        "fast": ("at a hurried pace", "in quick succession"),
        "templates": (
            "{fg} {fgv} {tempo} {pitch}, while {bg} {bgv} softly in the background.",
            "In the foreground {fg} {fgv} {pitch} {tempo}; behind it {bg} {bgv}.",
            "{bg} {bgv} in the distance as {fg} {fgv} {tempo} {pitch} close by.",
            "Close to the microphone {fg} {fgv} {pitch}, {tempo}, and {bg} {bgv} far away.",
        ),
    },
    "library": {"low": ("low",), "high": ("high",), "slow": ("slow",), "fast": ("fast",),
                "templates": ("{family}: {label}, {pitch}, {tempo}",)},
    "pretrain": {"templates": ("the sound of {n}", "{n} {v}", "{n}", "{label}")},
}


@dataclass(frozen=True)
class Domain:
    key: str
    role: str  # the real data set this one stands for
    concepts: tuple[str, ...]
    style: str  # event | descriptive | library | tags
    events: tuple[int, int]  # min, max events per clip
    captions: tuple[int, int]  # captions per clip: train, eval
    noise: float  # background noise level
    lowpass_hz: float | None
    reverb_s: float


DOMAINS: tuple[Domain, ...] = (
    Domain("audiocaps", "AudioCaps", ("dog", "cat", "bird", "rooster", "car", "motorcycle",
           "siren", "helicopter", "speech", "laughter", "knock", "bell"),
           "event", (1, 2), (1, 5), 0.05, None, 0.0),
    Domain("clotho", "Clotho", ("rain", "wind", "stream", "thunder", "waves", "crickets", "bird",
           "footsteps", "speech", "bell"), "descriptive", (2, 2), (5, 5), 0.08, 6000.0, 0.25),
    Domain("bbc", "BBC Sound Effects", ("drill", "saw", "hammer", "printer", "vacuum", "car",
           "train", "alarm", "knock"), "library", (1, 1), (1, 1), 0.01, 7000.0, 0.0),
    Domain("audioset", "AudioSet", ("guitar", "drum", "piano", "flute", "organ", "speech",
           "dog", "car", "applause", "cough"), "tags", (2, 3), (1, 1), 0.1, 4000.0, 0.0),
)


def stream_domains(length: int = 4, seed: int = 0) -> list[Domain]:
    """The first `length` domains; past four, variants with a new concept mix and channel."""
    if length < 1:
        raise ValueError(f"--length must be >= 1, got {length}")
    out = list(DOMAINS[:length])
    rng = np.random.default_rng([seed, 7919])
    keys = sorted(CONCEPTS)
    for i in range(len(DOMAINS), length):
        base = DOMAINS[i % len(DOMAINS)]
        picked = tuple(str(k) for k in rng.choice(keys, size=len(base.concepts), replace=False))
        out.append(replace(base, key=f"{base.key}-v{i // len(DOMAINS) + 1}", concepts=picked,
                           noise=float(rng.uniform(0.01, 0.1)),
                           lowpass_hz=float(rng.choice([3000.0, 5000.0, 7500.0]))))
    return out


def _pick(rng: np.random.Generator, options) -> str:
    return str(options[int(rng.integers(len(options)))])


def _with_adjective(noun: str, adj: str) -> str:
    first, _, rest = noun.partition(" ")
    if first in ("a", "an") and rest:
        article = "an" if adj[0] in "aeiou" else "a"
        return f"{article} {adj} {rest}"
    return f"{adj} {noun}"


def _event_phrase(e: Event, rng: np.random.Generator) -> str:
    c, pitch, tempo = e
    w = WORDS["event"]
    noun = _with_adjective(_pick(rng, c.nouns), _pick(rng, w[pitch]))
    return f"{noun} {_pick(rng, c.verbs)} {_pick(rng, w[tempo])}"


def caption(style: str, events: list[Event], arrangement: str, rng: np.random.Generator) -> str:
    """One caption in a domain's style for a clip made of `events`."""
    if style == "event":
        phrases = [_event_phrase(e, rng) for e in events]
        text = phrases[0] if len(phrases) == 1 else _pick(
            rng, WORDS["event"][arrangement]).format(a=phrases[0], b=phrases[1])
        return text[0].upper() + text[1:] + "."
    if style == "descriptive":
        (fg, pitch, tempo), (bg, _, _) = events[0], events[1]
        w = WORDS["descriptive"]
        text = _pick(rng, w["templates"]).format(
            fg=_pick(rng, fg.nouns), fgv=_pick(rng, fg.verbs), bg=_pick(rng, bg.nouns),
            bgv=_pick(rng, bg.verbs), pitch=_pick(rng, w[pitch]), tempo=_pick(rng, w[tempo]))
        return text[0].upper() + text[1:]
    if style == "library":
        c, pitch, tempo = events[0]
        w = WORDS["library"]
        return _pick(rng, w["templates"]).format(family=c.family.capitalize(), label=c.label,
                                                 pitch=w[pitch][0], tempo=w[tempo][0])
    if style == "tags":
        tags = [e[0].label for e in events]
        return ", ".join(tags[i] for i in rng.permutation(len(tags)))
    if style == "pretrain":
        c = events[0][0]
        return _pick(rng, WORDS["pretrain"]["templates"]).format(
            n=_pick(rng, c.nouns), v=_pick(rng, c.verbs), label=c.label)
    raise ValueError(f"unknown caption style {style!r}")


def _clip(domain: Domain, seconds: float, rng: np.random.Generator
          ) -> tuple[np.ndarray, list[Event], str]:
    n = int(seconds * SAMPLE_RATE)
    k = int(rng.integers(domain.events[0], domain.events[1] + 1))
    keys = rng.choice(len(domain.concepts), size=k, replace=False)
    events: list[Event] = [(CONCEPTS[domain.concepts[int(i)]], _pick(rng, ("low", "high")),
                            _pick(rng, ("slow", "fast"))) for i in keys]
    arrangement = "sequence" if (k == 2 and domain.style == "event"
                                 and rng.random() < 0.5) else "overlap"
    wave = np.zeros(n, dtype=np.float32)
    for j, (c, pitch, tempo) in enumerate(events):
        if arrangement == "sequence":
            half = n // 2
            wave[j * half:(j + 1) * half] += render(c, half / SAMPLE_RATE, pitch, tempo, rng)
        else:
            gain = 1.0 if j == 0 else (0.35 if domain.style == "descriptive" else 0.7)
            wave += gain * render(c, seconds, pitch, tempo, rng)
    if domain.reverb_s:
        wave = reverb(wave, domain.reverb_s, rng)
    wave = wave / (np.abs(wave).max() + 1e-8)
    wave = wave + domain.noise * rng.standard_normal(n).astype(np.float32)
    if domain.lowpass_hz:
        wave = lowpass(wave, domain.lowpass_hz)
    return (0.8 * wave / (np.abs(wave).max() + 1e-8)).astype(np.float32), events, arrangement


SPLITS = ("train", "val", "test")


def generate(domain: Domain, split: str, n_clips: int, *, seconds: float, seed: int,
             style: str | None = None, n_captions: int | None = None) -> PairSet:
    """A split of `domain`: `n_clips` clips, each with its domain's number of captions."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    style = style or domain.style
    per_clip = n_captions or domain.captions[0 if split == "train" else 1]
    # One generator per (seed, domain, split): splits are independent and reproducible.
    rng = np.random.default_rng([seed, *domain.key.encode(), SPLITS.index(split)])
    waves, captions, owners = [], [], []
    for i in range(n_clips):
        wave, events, arrangement = _clip(domain, seconds, rng)
        waves.append(wave)
        seen: list[str] = []
        for _ in range(per_clip):
            text = caption(style, events, arrangement, rng)
            for _retry in range(8):  # prefer distinct paraphrases when the grammar allows
                if text not in seen:
                    break
                text = caption(style, events, arrangement, rng)
            seen.append(text)
            captions.append(text)
            owners.append(i)
    ids = [f"{domain.key}/{split}/{i:05d}" for i in range(n_clips)]
    return PairSet(dataset=domain.key, split=split, clips=np.stack(waves), clip_ids=ids,
                   captions=captions, caption_clip=owners, sample_rate=SAMPLE_RATE)


def resampled(pairs: PairSet, sample_rate: int) -> PairSet:
    """The same split at another sample rate (for backbones that do not run at 16 kHz)."""
    import torch
    import torchaudio

    clips = torchaudio.functional.resample(torch.from_numpy(np.asarray(pairs.clips)),
                                           pairs.sample_rate, sample_rate).numpy()
    return replace(pairs, clips=clips, sample_rate=sample_rate)


PRETRAIN_DOMAIN = Domain("pretrain", "pretraining corpus",
                         tuple(k for k, c in CONCEPTS.items() if c.pretrain),
                         "pretrain", (1, 1), (1, 1), 0.03, None, 0.0)


def pretraining_corpus(n_clips: int, *, seconds: float, seed: int) -> PairSet:
    """Generic single-event clips with attribute-free captions, for the backbone only."""
    return generate(PRETRAIN_DOMAIN, "train", n_clips, seconds=seconds, seed=seed + 10_000)


def lexicon() -> list[str]:
    """Every word the grammar can emit: the embedded text encoder's vocabulary."""
    texts: list[str] = []
    for c in CONCEPTS.values():
        texts += [*c.nouns, *c.verbs, c.label, c.family.capitalize()]

    def walk(x) -> None:
        if isinstance(x, str):
            texts.append(re.sub(r"\{\w+\}", " ", x))  # template text around the slots
        elif isinstance(x, dict | tuple | list):
            for v in (x.values() if isinstance(x, dict) else x):
                walk(v)

    walk(WORDS)
    tokens = {t for text in texts for t in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower())}
    return sorted(tokens)
