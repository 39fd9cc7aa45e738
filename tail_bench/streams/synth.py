"""tail-synth: a generated four-domain text-audio stream standing in for TAIL.

The four domains play AudioCaps, Clotho, BBC Sound Effects and AudioSet and differ the way
the real ones do: recording channel (codec, room, band limits, noise), concept priors
(overlapping Zipf-like mixes, each with its own harsh sub-types), caption style, length,
captions per clip, and how often attributes are said. Words mean the same sound in every
domain (no label flips), so what a later step overwrites is a distribution, not a mapping.

The backbone is pretrained like a real CLAP (docs/tail-synth.md): on captions of every
style and every word of the lexicon (so a step caption has no unknown token), on audio of
every sound family with mild channels, minus held-out concepts and sub-types whose sound
only the steps carry. Everything is a pure function of (domain, split, size, seed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from tail_bench.streams.pairs import PairSet
from tail_bench.streams.sounds import (
    BRIEF_SECONDS,
    CONCEPTS,
    SAMPLE_RATE,
    Channel,
    Concept,
    lowpass,
    record,
    render,
    reverb,
)

STYLES = ("event", "descriptive", "library", "tags")
# Attribute phrasings per style. A phrase means one value in every style and domain.
WORDS = {
    "event": {
        "low": ("low-pitched", "deep"), "high": ("high-pitched", "shrill"),
        "slow": ("slowly", "lazily"), "fast": ("rapidly", "quickly"),
        "brief": ("briefly", "for a moment"), "long": ("continuously", "steadily"),
        "near": ("nearby", "close by"), "far": ("in the distance", "far away"),
        "sequence": ("{a} and then {b}", "{a}, followed by {b}", "{a}, then {b}"),
        "overlap": ("{a} while {b}", "{a} as {b}", "{a} and {b} at the same time"),
        "background": ("{a} with {bg} in the background", "{a} over {bg}",
                       "{a}, and {bgv} in the background"),
    },
    "descriptive": {
        "low": ("with a low tone", "in a deep register"),
        "high": ("with a high tone", "in a high register"),
        "slow": ("at a slow, steady pace", "unhurriedly"),
        "fast": ("at a hurried pace", "in quick succession"),
        "brief": ("for a brief moment", "for just an instant"),
        "long": ("throughout the recording", "without pause"),
        "near": ("close to the microphone", "right next to the recorder"),
        "far": ("far from the microphone", "somewhere in the distance"),
        "join": ("{a}, and {b}", "{a} while {b}"),
        "background": ("{a}, while {bgv} softly in the background.",
                       "In the foreground {a}; behind it {bgv}.",
                       "{bgv} in the background as {a}.",
                       "{a}, and behind that {bgv} quietly."),
        "alone": ("{a}.", "In this recording {a}."),
    },
    "library": {
        "low": ("low",), "high": ("high",), "slow": ("slow",), "fast": ("fast",),
        "brief": ("short", "single burst"), "long": ("long", "continuous"),
        "near": ("close perspective", "close-up"), "far": ("distant perspective", "distant"),
        "format": ("{family}: {body}", "{body} ({family})", "{family} - {body}"),
        "join": ("{a}; {b}",), "place": ("{a} - {place}",),
        "background": ("{a}, {bg} in background", "{a}, with {bg} behind"),
    },
    "tags": {
        "low": ("low",), "high": ("high",), "slow": ("slow",), "fast": ("fast",),
        "brief": ("short",), "long": ("long",), "near": ("close",), "far": ("distant",),
        "qualified": ("{a} ({q})",),
    },
}
TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")  # the word tower's tokenizer (models/towers.py)


@dataclass(frozen=True)
class Say:
    """How often a caption names each attribute; the sound itself is always named."""
    pitch: float
    tempo: float
    duration: float
    distance: float
    background: float


@dataclass(frozen=True)
class Domain:
    key: str
    role: str  # the real data set this one stands for
    concepts: tuple[str, ...]  # by frequency: weight 1 / rank ** zipf (see `ranked`)
    harsh: tuple[str, ...]  # concepts whose harsh sub-type this domain records
    backgrounds: tuple[str, ...]  # background beds, by frequency
    style: str  # event | descriptive | library | tags | mixed (any of them, per caption)
    events: tuple[int, int]  # min, max foreground events per clip
    p_background: float
    p_far: float  # share of clips recorded from a distance
    p_brief: float  # share of events that are one short burst
    say: Say
    captions: tuple[int, int]  # captions per clip: train, eval
    channels: tuple[Channel, ...]  # one is drawn per clip, then its levels are jittered
    p_harsh: float = 0.4  # share of a `harsh` concept's events that are the harsh sub-type
    zipf: float = 1.0
    contrast: bool = False  # every second scene: the one before with one attribute changed


# CHOICE: concepts the backbone never hears in pretraining (it reads their words); see also
# PRETRAIN_HARSH below.
HELD_OUT = ("rooster", "helicopter", "cough", "vacuum", "waves", "crickets", "printer", "organ")


def ranked(head: tuple[str, ...]) -> tuple[str, ...]:
    """A domain's frequency ranking: its own head, then as a Zipf tail every other concept
    the backbone has heard (CHOICE: the real data sets share most of their label space and
    differ in priors; a sound new to the backbone belongs to the heads that list it)."""
    return (*head, *(k for k in CONCEPTS if k not in head and k not in HELD_OUT))


DOMAINS: tuple[Domain, ...] = (
    Domain("audiocaps", "AudioCaps",
           ranked(("speech", "dog", "car", "bird", "helicopter", "motorcycle", "rooster",
                   "siren", "laughter", "cat", "knock", "train", "bell")),
           ("dog", "car"), ("wind", "rain", "stream"), "event", (1, 2), p_harsh=0.6,
           p_background=0.5, p_far=0.3, p_brief=0.3, say=Say(0.6, 0.6, 0.5, 0.5, 0.9),
           captions=(1, 5),  # YouTube audio: lossy codec, consumer microphones
           channels=(Channel(reverb_s=0.1, noise=0.04, noise_color="pink", lowpass_hz=5000,
                             drive=1.5, codec_bits=6),)),
    Domain("clotho", "Clotho",
           ranked(("bird", "rain", "footsteps", "stream", "wind", "speech", "waves",
                   "crickets", "thunder", "bell", "car", "dog")),
           ("bird", "footsteps"), ("wind", "rain", "stream", "crickets", "waves"),
           "descriptive", (1, 1), p_background=1.0, p_far=0.4, p_brief=0.3,
           say=Say(0.8, 0.8, 0.6, 0.8, 1.0),
           captions=(5, 5),  # field recordings: outdoor rooms, wind on the microphone
           channels=(Channel(reverb_s=0.35, noise=0.06, noise_color="rumble"),)),
    Domain("bbc", "BBC Sound Effects",
           ranked(("drill", "saw", "hammer", "car", "train", "printer", "vacuum", "alarm",
                   "knock", "footsteps", "bell", "helicopter")),
           ("saw", "hammer"), ("wind", "rain", "stream"), "library", (1, 1),
           p_background=0.5, p_far=0.5, p_brief=0.4, say=Say(0.6, 0.6, 0.6, 1.0, 1.0),
           captions=(1, 1),  # archive transfers: dry, band-limited, tape hiss
           channels=(Channel(noise=0.01, highpass_hz=250, lowpass_hz=6500),)),
    Domain("audioset", "AudioSet",
           ranked(("speech", "guitar", "drum", "piano", "dog", "car", "flute", "applause",
                   "laughter", "organ", "siren", "cough")),
           ("guitar",), ("rain", "wind", "crickets"), "tags", (2, 3),
           p_background=0.5, p_far=0.3, p_brief=0.3, say=Say(0.3, 0.3, 0.2, 0.2, 1.0),
           captions=(1, 1),  # any YouTube upload: narrow band, noisy, clipped, compressed
           channels=(Channel(noise=0.06, lowpass_hz=3500, drive=3.0, codec_bits=5),)),
)

# Nor does it hear any harsh sub-type a domain records (it hears the harsh cat, rain and bell,
# so harshness itself is not new).
PRETRAIN_HARSH = ("cat", "rain", "bell")
AMBIENT = ("wind", "rain", "stream", "crickets", "waves", "thunder")
NEUTRAL = Say(0.7, 0.7, 0.5, 0.5, 0.7)
PRETRAIN_DOMAIN = Domain(
    "pretrain", "pretraining corpus", tuple(k for k in CONCEPTS if k not in HELD_OUT),
    PRETRAIN_HARSH, tuple(k for k in AMBIENT if k not in HELD_OUT), "mixed", (1, 2),
    p_background=0.3, p_far=0.4, p_brief=0.3, say=NEUTRAL, captions=(3, 3), contrast=True,
    # clean, and a milder cousin of each domain's channel (a real CLAP has heard many rooms
    # and codecs; the steps' channels are stronger and combined differently)
    channels=(Channel(), Channel(noise=0.02),
              Channel(reverb_s=0.2, noise=0.02, noise_color="rumble"),
              Channel(noise=0.02, noise_color="pink", lowpass_hz=6000, codec_bits=7),
              Channel(noise=0.005, highpass_hz=150, lowpass_hz=7000),
              Channel(noise=0.03, lowpass_hz=4500, drive=2.0, codec_bits=7)), zipf=0.0)
# The text-side stage: every concept, sub-type and background, described in every style.
TEXT_DOMAIN = replace(PRETRAIN_DOMAIN, key="paraphrase",
                      concepts=tuple(CONCEPTS),
                      harsh=tuple(k for k, c in CONCEPTS.items() if c.harsh_verbs),
                      backgrounds=AMBIENT)


def stream_domains(length: int = 4, seed: int = 0) -> list[Domain]:
    """The first `length` domains; past four, variants of a base domain's style with a new
    concept mix, new sub-types and a new channel."""
    if length < 1:
        raise ValueError(f"--length must be >= 1, got {length}")
    out = list(DOMAINS[:length])
    rng = np.random.default_rng([seed, 7919])
    keys = sorted(CONCEPTS)
    for i in range(len(DOMAINS), length):
        base = DOMAINS[i % len(DOMAINS)]
        picked = tuple(str(k) for k in rng.choice(keys, size=len(base.concepts), replace=False))
        harsh = tuple(k for k in picked if CONCEPTS[k].harsh_verbs)[:len(base.harsh)]
        channel = Channel(reverb_s=float(rng.choice([0.0, 0.2, 0.5])),
                          noise=float(rng.uniform(0.01, 0.08)),
                          noise_color=str(rng.choice(["white", "pink", "rumble"])),
                          lowpass_hz=float(rng.choice([3000.0, 5000.0, 7500.0])),
                          codec_bits=int(rng.choice([0, 5, 6])) or None)
        out.append(replace(base, key=f"{base.key}-v{i // len(DOMAINS) + 1}", concepts=picked,
                           harsh=harsh, channels=(channel,)))
    return out


@dataclass(frozen=True)
class Event:
    concept: Concept
    harsh: bool  # the concept's harsh sub-type
    pitch: str  # low | high
    tempo: str  # slow | fast
    duration: str  # brief | long


@dataclass(frozen=True)
class Scene:
    """The latent content of a clip: what every caption of it describes."""
    events: tuple[Event, ...]
    arrangement: str  # single | sequence | overlap
    background: Concept | None
    distance: str  # near | far


def _pick(rng: np.random.Generator, options) -> str:
    return str(options[int(rng.integers(len(options)))])


def _zipf(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


def scene(domain: Domain, rng: np.random.Generator) -> Scene:
    """Draw a clip's latent content from the domain's priors."""
    k = int(rng.integers(domain.events[0], domain.events[1] + 1))
    idx = rng.choice(len(domain.concepts), size=k, replace=False,
                     p=_zipf(len(domain.concepts), domain.zipf))
    events = tuple(Event(CONCEPTS[domain.concepts[int(i)]],
                         domain.concepts[int(i)] in domain.harsh and rng.random() < domain.p_harsh,
                         _pick(rng, ("low", "high")), _pick(rng, ("slow", "fast")),
                         "brief" if rng.random() < domain.p_brief else "long") for i in idx)
    arrangement = "single" if k == 1 else (
        "sequence" if k == 2 and domain.style in ("event", "mixed") and rng.random() < 0.5
        else "overlap")
    background = None
    beds = [b for b in domain.backgrounds if all(e.concept.key != b for e in events)]
    if beds and rng.random() < domain.p_background:
        background = CONCEPTS[str(rng.choice(beds, p=_zipf(len(beds), domain.zipf)))]
    return Scene(events, arrangement, background,
                 "far" if rng.random() < domain.p_far else "near")


OTHER = {"low": "high", "high": "low", "slow": "fast", "fast": "slow", "brief": "long",
         "long": "brief", "near": "far", "far": "near"}


def contrasted(s: Scene, rng: np.random.Generator) -> Scene:
    """`s` with one attribute changed: its distance, or the pitch, tempo (a sustained one's),
    duration or sub-type of its first event. CHOICE: pretraining batches hold such minimal
    pairs, so the towers must learn the attributes (random in-batch negatives differ by
    their sounds alone)."""
    e = s.events[0]
    options = ["pitch", "duration", "distance", *(["tempo"] if e.duration == "long" else []),
               *(["harsh"] if e.concept.key in PRETRAIN_HARSH else [])]
    what = _pick(rng, options)
    if what == "distance":
        return replace(s, distance=OTHER[s.distance])
    e = replace(e, harsh=not e.harsh) if what == "harsh" else replace(
        e, **{what: OTHER[getattr(e, what)]})
    return replace(s, events=(e, *s.events[1:]))


def _jittered(ch: Channel, rng: np.random.Generator) -> Channel:
    return replace(ch, reverb_s=ch.reverb_s * rng.uniform(0.7, 1.3),
                   noise=ch.noise * rng.uniform(0.5, 1.5),
                   lowpass_hz=ch.lowpass_hz and ch.lowpass_hz * rng.uniform(0.9, 1.1))


def render_scene(s: Scene, channel: Channel, seconds: float,
                 rng: np.random.Generator) -> np.ndarray:
    """The clip of scene `s` recorded through `channel`: events in their slots (halves for a
    sequence), a distant source reverberant, dull and quieter, a background bed under it."""
    n = int(seconds * SAMPLE_RATE)
    wave = np.zeros(n, dtype=np.float32)
    for j, e in enumerate(s.events):
        start, length = (j * (n // 2), n // 2) if s.arrangement == "sequence" else (0, n)
        if e.duration == "brief":
            burst = min(int(BRIEF_SECONDS * SAMPLE_RATE), length)
            start += int(rng.integers(0, length - burst + 1))
            length = burst
        gain = 1.0 if j == 0 or s.arrangement == "sequence" else 0.6
        wave[start:start + length] += gain * render(e.concept, length / SAMPLE_RATE, e.pitch,
                                                    e.tempo, rng, harsh=e.harsh)
    wave /= np.abs(wave).max() + 1e-8
    if s.distance == "far":
        wave = 0.45 * lowpass(reverb(wave, 0.4, rng), 2500.0)
    if s.background is not None:
        wave = wave + 0.3 * render(s.background, seconds, "mid", "mid", rng)
    return record(wave, _jittered(channel, rng), rng)


def _said(say: Say, rng: np.random.Generator) -> dict[str, bool]:
    return {k: bool(rng.random() < getattr(say, k))
            for k in ("pitch", "tempo", "duration", "distance", "background")}


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _with_adjective(noun: str, adj: str) -> str:
    first, _, rest = noun.partition(" ")
    if first in ("a", "an") and rest:
        return f"{'an' if adj[0] in 'aeiou' else 'a'} {adj} {rest}"
    return f"{adj} {noun}"


def _named(e: Event, said: dict[str, bool]) -> list[str]:
    """The attribute values of `e` a caption names: a brief burst has no tempo to name."""
    return [v for a, v in (("pitch", e.pitch), ("tempo", e.tempo), ("duration", e.duration))
            if said[a] and not (a == "tempo" and e.duration == "brief")]


def _clause(e: Event, w: dict, said: dict[str, bool], rng: np.random.Generator,
            pitch_as_adjective: bool) -> str:
    """noun + verb + the attributes this caption names, in one style's phrasing."""
    named = _named(e, said)
    noun = _pick(rng, e.concept.nouns)
    if pitch_as_adjective and e.pitch in named:
        noun = _with_adjective(noun, _pick(rng, w[e.pitch]))
        named.remove(e.pitch)
    verb = _pick(rng, e.concept.harsh_verbs if e.harsh else e.concept.verbs)
    return " ".join([noun, verb, *(_pick(rng, w[v]) for v in named)])


def _sentence(s: Scene, w: dict, said: dict[str, bool], rng: np.random.Generator, *,
              adjective: bool, joiner: str) -> str:
    """The events' clauses (the first with the distance, if said) joined by `w[joiner]`:
    the shared core of the event and descriptive styles."""
    parts = [_clause(e, w, said, rng, pitch_as_adjective=adjective) for e in s.events]
    if said["distance"]:
        parts[0] += " " + _pick(rng, w[s.distance])
    text = parts[0]
    for b in parts[1:]:
        text = _pick(rng, w[joiner]).format(a=text, b=b)
    return text


def _bed(bg: Concept, rng: np.random.Generator) -> str:
    return f"{_pick(rng, bg.nouns)} {_pick(rng, bg.verbs)}"


def _label(e: Event) -> str:
    return e.concept.harsh_label if e.harsh else e.concept.label


def caption(style: str, s: Scene, say: Say, rng: np.random.Generator) -> str:
    """One caption of scene `s` in `style`; `say` sets how often each attribute is named."""
    said = _said(say, rng)
    bg = s.background if said["background"] else None
    if style == "event":
        w = WORDS["event"]
        text = _sentence(s, w, said, rng, adjective=True,
                         joiner="sequence" if s.arrangement == "sequence" else "overlap")
        if bg is not None:
            text = _pick(rng, w["background"]).format(a=text, bg=_pick(rng, bg.nouns),
                                                      bgv=_bed(bg, rng))
        return _cap(text) + "."
    if style == "descriptive":
        w = WORDS["descriptive"]
        text = _sentence(s, w, said, rng, adjective=False, joiner="join")
        if bg is None:
            return _cap(_pick(rng, w["alone"]).format(a=text))
        return _cap(_pick(rng, w["background"]).format(a=text, bgv=_bed(bg, rng)))
    if style == "library":
        w = WORDS["library"]
        bodies = [", ".join([_label(e), *(_pick(rng, w[v]) for v in _named(e, said))])
                  for e in s.events]
        body = bodies[0]
        for b in bodies[1:]:
            body = _pick(rng, w["join"]).format(a=body, b=b)
        if said["distance"]:
            body = _pick(rng, w["place"]).format(a=body, place=_pick(rng, w[s.distance]))
        if bg is not None:
            body = _pick(rng, w["background"]).format(a=body, bg=bg.label)
        return _cap(_pick(rng, w["format"]).format(family=s.events[0].concept.family,
                                                   body=body))
    if style == "tags":
        w = WORDS["tags"]
        tags = []
        for j, e in enumerate(s.events):
            q = [_pick(rng, w[v]) for v in _named(e, said)]
            if j == 0 and said["distance"]:
                q.append(_pick(rng, w[s.distance]))
            tags.append(_pick(rng, w["qualified"]).format(a=_label(e), q=", ".join(q))
                        if q else _label(e))
        if bg is not None:
            tags.append(bg.label)
        return ", ".join(tags[i] for i in rng.permutation(len(tags)))
    raise ValueError(f"unknown caption style {style!r}")


SPLITS = ("train", "val", "test")


def _rngs(domain: Domain, split: str, seed: int) -> tuple[np.random.Generator, ...]:
    """Per (seed, domain, split): splits are independent and reproducible; content and
    captions draw from one generator, audio from another, so either is available alone."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    base = [seed, *domain.key.encode(), SPLITS.index(split)]
    return np.random.default_rng([*base, 0]), np.random.default_rng([*base, 1])


def described(domain: Domain, split: str, n_clips: int, *, seed: int,
              n_captions: int | None = None) -> tuple[list[Scene], list[str], list[int]]:
    """The scenes of a split, their captions and each caption's clip, without audio."""
    per_clip = n_captions or domain.captions[0 if split == "train" else 1]
    rng, _ = _rngs(domain, split, seed)
    scenes, captions, owners = [], [], []
    for i in range(n_clips):
        s = contrasted(scenes[-1], rng) if domain.contrast and i % 2 else scene(domain, rng)
        scenes.append(s)
        seen: set[str] = set()
        for _ in range(per_clip):
            for _retry in range(8):  # distinct paraphrases of one clip where the grammar can
                style = _pick(rng, STYLES) if domain.style == "mixed" else domain.style
                text = caption(style, s, domain.say, rng)
                if text not in seen:
                    break
            seen.add(text)
            captions.append(text)
            owners.append(i)
    return scenes, captions, owners


def generate(domain: Domain, split: str, n_clips: int, *, seconds: float, seed: int,
             n_captions: int | None = None) -> PairSet:
    """A split of `domain`: `n_clips` clips, each with its domain's number of captions."""
    scenes, captions, owners = described(domain, split, n_clips, seed=seed,
                                         n_captions=n_captions)
    _, rng = _rngs(domain, split, seed)
    waves = [render_scene(s, domain.channels[int(rng.integers(len(domain.channels)))],
                          seconds, rng) for s in scenes]
    ids = [f"{domain.key}/{split}/{i:05d}" for i in range(n_clips)]
    return PairSet(dataset=domain.key, split=split,
                   clips=np.stack(waves) if waves else np.zeros((0, int(seconds * SAMPLE_RATE)),
                                                                dtype=np.float32),
                   clip_ids=ids, captions=captions, caption_clip=owners,
                   sample_rate=SAMPLE_RATE)


def resampled(pairs: PairSet, sample_rate: int) -> PairSet:
    """The same split at another sample rate (for backbones that do not run at 16 kHz)."""
    import torch
    import torchaudio

    clips = torchaudio.functional.resample(torch.from_numpy(np.asarray(pairs.clips)),
                                           pairs.sample_rate, sample_rate).numpy()
    return replace(pairs, clips=clips, sample_rate=sample_rate)


def pretraining_corpus(n_clips: int, *, seconds: float, seed: int) -> PairSet:
    """The backbone's audio-text corpus: mixtures over every heard concept, mild channels,
    three captions per clip in styles drawn from all four, attributes named at the neutral
    rates of `NEUTRAL` (no domain's habits)."""
    return generate(PRETRAIN_DOMAIN, "train", n_clips, seconds=seconds, seed=seed + 10_000)


def pretraining_texts(n_clips: int, n_pairs: int, *, seed: int) -> list[str]:
    """Every text the backbone reads in pretraining: the captions of
    `pretraining_corpus(n_clips, seed=seed)` and of `paraphrase_corpus(n_pairs, seed=seed)`."""
    _, captions, _ = described(PRETRAIN_DOMAIN, "train", n_clips, seed=seed + 10_000)
    return captions + [t for pair in paraphrase_corpus(n_pairs, seed=seed) for t in pair]


def paraphrase_corpus(n_scenes: int, *, seed: int) -> list[tuple[str, str]]:
    """The backbone's text-side corpus: two captions of one scene in random styles, over
    every concept, sub-type and background (held-out ones included): it teaches the text
    tower every word and that the styles are paraphrases of one another."""
    rng = np.random.default_rng([seed, 20_000])
    out = []
    for _ in range(n_scenes):
        s = scene(TEXT_DOMAIN, rng)
        out.append((caption(_pick(rng, STYLES), s, NEUTRAL, rng),
                    caption(_pick(rng, STYLES), s, NEUTRAL, rng)))
    return out


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def lexicon() -> list[str]:
    """Every token the grammar can emit: the embedded text encoder's vocabulary."""
    texts: list[str] = []
    for c in CONCEPTS.values():
        texts += [*c.nouns, *c.verbs, c.label, *c.harsh_verbs, c.harsh_label, c.family]

    def walk(x) -> None:
        if isinstance(x, str):
            texts.append(re.sub(r"\{\w+\}", " ", x))  # template text around the slots
        elif isinstance(x, dict | tuple | list):
            for v in (x.values() if isinstance(x, dict) else x):
                walk(v)

    walk(WORDS)
    return sorted({t for text in texts for t in tokens(text)})


def unseen_tokens(texts: Iterable[str], known: Iterable[str]) -> set[str]:
    """Tokens of `texts` that never occur in `known` (a corpus)."""
    seen = {t for text in known for t in tokens(text)}
    return {t for text in texts for t in tokens(text)} - seen


def duplicate_captions(pairs: PairSet) -> int:
    """Captions whose token sequence repeats an earlier one in the split (what the text
    tower sees: case differences are not distinct captions)."""
    return len(pairs.captions) - len({tuple(tokens(c)) for c in pairs.captions})
