"""Parametric sound concepts for the generated stream.

Each concept is a small recipe (a kind of signal, a base frequency, a repetition rate) so
that clips of one concept share acoustics while pitch and tempo vary per clip. The words a
caption uses for a concept live here too, so the grammar and the sounds cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
PITCH = {"low": 0.7, "high": 1.45}
TEMPO = {"slow": 0.55, "fast": 1.8}


@dataclass(frozen=True)
class Concept:
    key: str
    family: str
    kind: str  # harmonic | chirp | noise | clicks | am
    freq: float  # Hz: fundamental, sweep start, band centre or carrier
    rate: float  # repetitions (or modulation cycles) per second
    nouns: tuple[str, ...]  # caption phrases, e.g. "a dog"
    verbs: tuple[str, ...]  # third person, e.g. "barks"
    label: str  # sound-library style label
    pretrain: bool = True  # part of the backbone's own pretraining corpus


def _c(key, family, kind, freq, rate, nouns, verbs, label, pretrain=True) -> Concept:
    return Concept(key, family, kind, freq, rate, tuple(nouns), tuple(verbs), label, pretrain)


CONCEPTS: dict[str, Concept] = {c.key: c for c in [
    _c("dog", "animals", "harmonic", 450, 3.0, ["a dog", "a puppy"], ["barks", "yaps"], "dog bark"),
    _c("cat", "animals", "chirp", 600, 1.2, ["a cat", "a kitten"], ["meows", "mews"], "cat meow"),
    _c("bird", "animals", "chirp", 3500, 6.0, ["a bird", "a songbird"], ["chirps", "sings"],
       "bird song"),
    _c("rooster", "animals", "harmonic", 700, 0.8, ["a rooster", "a cockerel"], ["crows", "calls"],
       "rooster crow", pretrain=False),
    _c("car", "vehicles", "am", 90, 8.0, ["a car", "an automobile"], ["idles", "rumbles"],
       "car engine"),
    _c("motorcycle", "vehicles", "am", 160, 20.0, ["a motorcycle", "a motorbike"],
       ["revs", "roars"], "motorcycle engine"),
    _c("siren", "vehicles", "chirp", 800, 0.5, ["a siren", "an emergency siren"],
       ["wails", "sounds"], "siren"),
    _c("helicopter", "vehicles", "clicks", 150, 12.0, ["a helicopter", "a chopper"],
       ["hovers", "flies over"], "helicopter rotor", pretrain=False),
    _c("train", "vehicles", "clicks", 250, 5.0, ["a train", "a locomotive"],
       ["clatters", "passes"], "train on tracks"),
    _c("speech", "human", "am", 220, 4.0, ["a man", "a person"], ["speaks", "talks"], "speech"),
    _c("laughter", "human", "harmonic", 300, 6.0, ["a child", "a woman"], ["laughs", "giggles"],
       "laughter"),
    _c("footsteps", "human", "clicks", 600, 2.0, ["footsteps", "steps"], ["walk", "shuffle"],
       "footsteps"),
    _c("applause", "human", "clicks", 2000, 30.0, ["a crowd", "an audience"],
       ["applauds", "claps"], "applause"),
    _c("cough", "human", "noise", 500, 1.5, ["a man", "someone"], ["coughs", "clears his throat"],
       "cough", pretrain=False),
    _c("knock", "domestic", "clicks", 300, 3.0, ["someone", "a visitor"], ["knocks", "raps"],
       "door knock"),
    _c("bell", "domestic", "harmonic", 1200, 1.0, ["a bell", "a chime"], ["rings", "chimes"],
       "bell"),
    _c("alarm", "domestic", "harmonic", 2500, 4.0, ["an alarm", "a buzzer"], ["beeps", "buzzes"],
       "alarm beep"),
    _c("vacuum", "domestic", "noise", 1800, 0.4, ["a vacuum cleaner", "a hoover"],
       ["whirs", "hums"], "vacuum cleaner", pretrain=False),
    _c("rain", "nature", "noise", 3000, 20.0, ["rain", "a downpour"], ["falls", "patters"], "rain"),
    _c("wind", "nature", "noise", 400, 0.5, ["wind", "a breeze"], ["blows", "gusts"], "wind"),
    _c("stream", "nature", "noise", 1200, 3.0, ["a stream", "a brook"], ["flows", "trickles"],
       "running water"),
    _c("thunder", "nature", "noise", 120, 0.3, ["thunder", "a storm"], ["rumbles", "booms"],
       "thunder"),
    _c("waves", "nature", "noise", 700, 0.2, ["waves", "the surf"], ["crash", "break"],
       "sea waves", pretrain=False),
    _c("crickets", "nature", "am", 4500, 15.0, ["crickets", "insects"], ["chirp", "buzz"],
       "crickets", pretrain=False),
    _c("drill", "machines", "am", 400, 40.0, ["a drill", "a power drill"], ["whines", "drills"],
       "electric drill"),
    _c("saw", "machines", "noise", 2500, 4.0, ["a saw", "a handsaw"], ["cuts", "rasps"], "saw"),
    _c("hammer", "machines", "clicks", 1500, 2.5, ["a hammer", "a mallet"], ["bangs", "pounds"],
       "hammer"),
    _c("printer", "machines", "am", 1000, 10.0, ["a printer", "a dot matrix printer"],
       ["prints", "chatters"], "printer", pretrain=False),
    _c("guitar", "music", "harmonic", 330, 2.0, ["a guitar", "an acoustic guitar"],
       ["plays", "strums"], "guitar"),
    _c("drum", "music", "clicks", 100, 4.0, ["a drum", "a bass drum"], ["beats", "pounds"], "drum"),
    _c("piano", "music", "harmonic", 520, 1.5, ["a piano", "a keyboard"], ["plays", "sounds"],
       "piano"),
    _c("flute", "music", "am", 880, 5.0, ["a flute", "a recorder"], ["plays", "whistles"], "flute"),
    _c("organ", "music", "harmonic", 260, 0.3, ["an organ", "a church organ"], ["drones", "plays"],
       "organ", pretrain=False),
]}


def _band_noise(n: int, lo: float, hi: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec[(freqs < lo) | (freqs > hi)] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.abs(out).max() + 1e-8)


def render(concept: Concept, seconds: float, pitch: str, tempo: str,
           rng: np.random.Generator) -> np.ndarray:
    """One event of `concept` lasting `seconds`, peak-normalised, float32."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = concept.freq * PITCH[pitch] * rng.uniform(0.95, 1.05)
    r = concept.rate * TEMPO[tempo] * rng.uniform(0.9, 1.1)
    phase = rng.uniform(0, 1)
    cycle = (t * r + phase) % 1.0  # position inside the current repetition
    if concept.kind == "harmonic":
        tone = sum(np.sin(2 * np.pi * k * f * t) / k for k in (1, 2, 3, 4))
        sig = tone * np.exp(-cycle * 6.0)
    elif concept.kind == "chirp":
        inst = f * (1.0 + cycle)  # sweeps up an octave per repetition
        sig = np.sin(2 * np.pi * np.cumsum(inst) / SAMPLE_RATE) * np.sin(np.pi * cycle) ** 2
    elif concept.kind == "noise":
        sig = _band_noise(n, f * 0.6, f * 1.4, rng) * (0.55 + 0.45 * np.sin(2 * np.pi * cycle))
    elif concept.kind == "clicks":
        sig = _band_noise(n, f * 0.5, f * 2.0, rng) * np.exp(-cycle * 40.0)
    elif concept.kind == "am":
        sig = np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(2 * np.pi * cycle))
    else:
        raise ValueError(f"concept {concept.key!r}: unknown kind {concept.kind!r}")
    sig = np.asarray(sig, dtype=np.float64)
    return (sig / (np.abs(sig).max() + 1e-8)).astype(np.float32)


def lowpass(x: np.ndarray, cutoff: float) -> np.ndarray:
    spec = np.fft.rfft(x)
    spec[np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE) > cutoff] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def reverb(x: np.ndarray, decay_s: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with an exponentially decaying noise tail (a cheap room)."""
    m = int(decay_s * SAMPLE_RATE)
    ir = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 5))
    ir[0] = 1.0
    n = len(x)
    y = np.fft.irfft(np.fft.rfft(x, n + m) * np.fft.rfft(ir, n + m), n + m)[:n]
    return (y / (np.abs(y).max() + 1e-8)).astype(np.float32)
