"""Parametric sound concepts and recording channels for the generated stream.

Each concept is a small recipe (a kind of signal, a base frequency, a repetition rate) so
that clips of one concept share acoustics while pitch, tempo, duration and a harsh sub-type
vary per event. The words a caption uses for a concept live here too, so the grammar and
the sounds cannot drift apart: a word always means the same sound, in every domain.
A `Channel` is what a recording set-up does to a clip (room, band limits, noise, codec).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
PITCH = {"low": 0.65, "high": 1.55, "mid": 1.0}  # mid: unnamed (background beds)
TEMPO = {"slow": 0.45, "fast": 2.2, "mid": 1.0}
BRIEF_SECONDS = 0.5  # a "brief" event: one burst of this length inside its slot


@dataclass(frozen=True)
class Concept:
    key: str
    family: str
    kind: str  # harmonic | chirp | noise | clicks | am
    freq: float  # Hz: fundamental, sweep start, band centre or carrier
    rate: float  # repetitions per second; at most 12, so that fast (x2.2) stays visible in
    # 10 ms log-mel frames
    nouns: tuple[str, ...]  # caption phrases, e.g. "a dog"
    verbs: tuple[str, ...]  # agreeing with every noun, e.g. "barks"
    label: str  # sound-library / tag label
    harsh_verbs: tuple[str, ...] = ()  # the harsh sub-type (rasping, distorted), if any
    harsh_label: str = ""


def _c(key, family, kind, freq, rate, nouns, verbs, label, harsh=(), harsh_label="") -> Concept:
    return Concept(key, family, kind, freq, rate, tuple(nouns), tuple(verbs), label,
                   tuple(harsh), harsh_label)


CONCEPTS: dict[str, Concept] = {c.key: c for c in [
    _c("dog", "animals", "harmonic", 450, 3.0, ["a dog", "a puppy", "a hound"],
       ["barks", "yaps", "woofs"], "dog bark", ["growls", "snarls"], "dog growl"),
    _c("cat", "animals", "chirp", 600, 1.2, ["a cat", "a kitten"], ["meows", "mews"],
       "cat meow", ["hisses", "yowls"], "cat hiss"),
    _c("bird", "animals", "chirp", 3500, 6.0, ["a bird", "a songbird", "a sparrow"],
       ["chirps", "sings", "tweets"], "bird song", ["squawks", "screeches"], "bird squawk"),
    _c("rooster", "animals", "harmonic", 700, 1.0, ["a rooster", "a cockerel"],
       ["crows", "calls"], "rooster crow"),
    _c("car", "vehicles", "am", 90, 8.0, ["a car", "an automobile", "a vehicle"],
       ["idles", "rumbles", "drives by"], "car engine", ["sputters", "backfires"],
       "car engine sputter"),
    _c("motorcycle", "vehicles", "am", 160, 10.0, ["a motorcycle", "a motorbike"],
       ["revs", "roars"], "motorcycle engine"),
    _c("siren", "vehicles", "chirp", 800, 1.0, ["a siren", "an emergency siren"],
       ["wails", "sounds"], "siren"),
    _c("helicopter", "vehicles", "clicks", 150, 9.0, ["a helicopter", "a chopper"],
       ["hovers", "flies over"], "helicopter rotor"),
    _c("train", "vehicles", "clicks", 250, 5.0, ["a train", "a locomotive"],
       ["clatters", "passes"], "train on tracks"),
    _c("speech", "human", "am", 220, 4.0, ["a man", "a woman", "a person"],
       ["speaks", "talks", "says something"], "speech", ["shouts", "yells"], "shouting"),
    _c("laughter", "human", "harmonic", 300, 6.0, ["a child", "a girl", "a baby"],
       ["laughs", "giggles"], "laughter"),
    _c("footsteps", "human", "clicks", 600, 2.0, ["footsteps", "steps", "feet"],
       ["walk", "shuffle", "tread"], "footsteps", ["crunch", "scrape"], "footsteps on gravel"),
    _c("applause", "human", "clicks", 2000, 10.0, ["a crowd", "an audience"],
       ["applauds", "claps"], "applause"),
    _c("cough", "human", "noise", 500, 1.5, ["an old man", "someone"],
       ["coughs", "clears his throat"], "cough"),
    _c("knock", "domestic", "clicks", 300, 3.0, ["a visitor", "a neighbour"],
       ["knocks", "raps on a door"], "door knock", ["bangs on a door", "pounds on a door"],
       "door banging"),
    _c("bell", "domestic", "harmonic", 1200, 1.0, ["a bell", "a chime", "a church bell"],
       ["rings", "chimes", "tolls"], "bell", ["clangs", "clanks"], "bell clang"),
    _c("alarm", "domestic", "harmonic", 2500, 4.0, ["an alarm", "a buzzer", "a smoke alarm"],
       ["beeps", "buzzes"], "alarm beep"),
    _c("vacuum", "domestic", "noise", 1800, 1.0, ["a vacuum cleaner", "a hoover"],
       ["whirs", "hums"], "vacuum cleaner"),
    _c("rain", "nature", "noise", 3000, 8.0, ["rain", "a downpour", "drizzle"],
       ["falls", "patters", "pours"], "rain", ["lashes down", "pelts down"], "heavy rain"),
    _c("wind", "nature", "noise", 400, 1.0, ["wind", "a breeze", "a gale"],
       ["blows", "gusts", "howls"], "wind"),
    _c("stream", "nature", "noise", 1200, 3.0, ["a stream", "a brook", "a creek"],
       ["flows", "trickles", "babbles"], "running water", ["gushes", "splashes"],
       "rushing water"),
    _c("thunder", "nature", "noise", 120, 0.8, ["thunder", "a storm"], ["rumbles", "booms"],
       "thunder"),
    _c("waves", "nature", "noise", 700, 0.6, ["waves", "breakers"], ["crash", "break"],
       "sea waves"),
    _c("crickets", "nature", "am", 4500, 8.0, ["crickets", "insects", "cicadas"],
       ["chirp", "buzz", "trill"], "crickets"),
    _c("drill", "machines", "am", 400, 12.0, ["a drill", "a power drill"],
       ["whines", "drills", "bores"], "electric drill", ["grinds", "judders"],
       "drill grinding"),
    _c("saw", "machines", "noise", 2500, 4.0, ["a saw", "a handsaw"], ["cuts", "rasps"],
       "saw", ["screeches", "snags"], "saw screech"),
    _c("hammer", "machines", "clicks", 1500, 2.5, ["a hammer", "a mallet"],
       ["bangs", "pounds", "taps"], "hammer", ["clanks", "strikes metal"], "hammer on metal"),
    _c("printer", "machines", "am", 1000, 7.0, ["a printer", "a dot matrix printer"],
       ["prints", "chatters"], "printer"),
    _c("guitar", "music", "harmonic", 330, 2.0, ["a guitar", "an acoustic guitar"],
       ["plays", "strums"], "guitar", ["plays distorted chords", "wails"],
       "distorted guitar"),
    _c("drum", "music", "clicks", 100, 4.0, ["a drum", "a bass drum", "a drummer"],
       ["beats", "pounds", "thumps"], "drum", ["crashes", "rattles"], "snare rattle"),
    _c("piano", "music", "harmonic", 520, 1.5, ["a piano", "a keyboard"],
       ["plays", "sounds"], "piano"),
    _c("flute", "music", "am", 880, 5.0, ["a flute", "a recorder"], ["plays", "whistles"],
       "flute"),
    _c("organ", "music", "harmonic", 260, 1.0, ["an organ", "a church organ"],
       ["drones", "plays"], "organ"),
]}


def _band_noise(n: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec[(freqs < lo) | (freqs > hi)] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.abs(out).max() + 1e-8)


def render(concept: Concept, seconds: float, pitch: str, tempo: str, rng: np.random.Generator,
           *, harsh: bool = False) -> np.ndarray:
    """One event of `concept` lasting `seconds`, peak-normalised, float32. The harsh sub-type
    saturates the carrier and adds a noise band two to five times above it (a rasp)."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = concept.freq * PITCH[pitch] * rng.uniform(0.95, 1.05)
    r = concept.rate * TEMPO[tempo] * rng.uniform(0.9, 1.1)
    cycle = (t * r + rng.uniform(0, 1)) % 1.0  # position inside the current repetition
    if concept.kind == "harmonic":
        carrier = sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 2, 3, 4))
        env = np.exp(-cycle * 6.0)
    elif concept.kind == "chirp":
        carrier = np.sin(2 * np.pi * np.cumsum(f * (1.0 + cycle)) / SAMPLE_RATE)
        env = np.sin(np.pi * cycle) ** 2  # sweeps up an octave per repetition
    elif concept.kind == "noise":
        carrier = _band_noise(n, f * 0.6, f * 1.4, rng)
        env = 0.55 + 0.45 * np.sin(2 * np.pi * cycle)
    elif concept.kind == "clicks":
        carrier = _band_noise(n, f * 0.5, f * 2.0, rng)
        env = np.exp(-cycle * 40.0)
    elif concept.kind == "am":
        carrier = np.sin(2 * np.pi * f * t)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * cycle)
    else:
        raise ValueError(f"concept {concept.key!r}: unknown kind {concept.kind!r}")
    carrier = np.asarray(carrier, dtype=np.float64)
    carrier /= np.abs(carrier).max() + 1e-8
    if harsh:
        hi = min(f * 5.0, SAMPLE_RATE / 2 - 100)
        carrier = 0.6 * np.tanh(3 * carrier) + 0.5 * _band_noise(n, min(f * 2.0, hi / 2), hi, rng)
    sig = carrier * env
    return (sig / (np.abs(sig).max() + 1e-8)).astype(np.float32)


@dataclass(frozen=True)
class Channel:
    """A recording set-up. Levels are jittered per clip by the generator."""
    reverb_s: float = 0.0  # room decay; 0: dry
    noise: float = 0.0  # noise level against a peak-normalised clip
    noise_color: str = "white"  # white | pink | rumble (wind on the microphone)
    highpass_hz: float | None = None
    lowpass_hz: float | None = None
    drive: float = 0.0  # tanh saturation (clipping); 0: none
    codec_bits: int | None = None  # mu-law quantisation: a codec-like distortion


def _filtered(x: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    if lo:
        spec[freqs < lo] = 0
    if hi:
        spec[freqs > hi] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    return _filtered(x, None, cutoff)


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: an FFT of a length with a large prime factor is slow."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def reverb(x: np.ndarray, decay_s: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with an exponentially decaying noise tail (a cheap room)."""
    m = int(decay_s * SAMPLE_RATE)
    ir = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 5))
    ir[0] = 1.0
    n = len(x)
    size = _fast_length(n + m)
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[:n]
    return (y / (np.abs(y).max() + 1e-8)).astype(np.float32)


def _noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    if color == "white":
        out = rng.standard_normal(n)
    else:
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        if color == "pink":
            spec /= np.sqrt(np.maximum(freqs, 20.0))
        elif color == "rumble":
            spec[freqs > 300] = 0
        else:
            raise ValueError(f"unknown noise colour {color!r}")
        out = np.fft.irfft(spec, n)
    return (out / (out.std() + 1e-8)).astype(np.float32)


def record(x: np.ndarray, ch: Channel, rng: np.random.Generator) -> np.ndarray:
    """`x` through channel `ch`: room, saturation, band limits, noise, codec; 0.8 peak."""
    if ch.reverb_s:
        x = reverb(x, ch.reverb_s, rng)
    x = x / (np.abs(x).max() + 1e-8)
    if ch.drive:
        x = np.tanh(ch.drive * x) / np.tanh(ch.drive)
    if ch.noise:
        x = x + ch.noise * _noise(len(x), ch.noise_color, rng)
    if ch.highpass_hz or ch.lowpass_hz:
        x = _filtered(x, ch.highpass_hz, ch.lowpass_hz)
    x = x / (np.abs(x).max() + 1e-8)
    if ch.codec_bits:
        mu = 255.0
        levels = 2 ** (ch.codec_bits - 1)
        y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
        y = np.round(y * levels) / levels
        x = np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu
    return (0.8 * x / (np.abs(x).max() + 1e-8)).astype(np.float32)
