"""Where each TAIL data set lives under --data-root: the layouts users have, detected per
data set (docs/datasets.md).

- `original`: the releases as distributed (AudioCaps CSVs, Clotho v2.1 CSVs and folders,
  WavCaps' json_files), under `audiocaps/`, `clotho/` and `wavcaps/`;
- `aac-datasets`: what the `aac-datasets` package's download functions write: `AUDIOCAPS/`,
  `CLOTHO_v2.1/` and `WavCaps/` (often a link into the Hugging Face cache);
- `wavcaps`: the WavCaps retrieval code's `AudioCaps/` and `Clotho/` folders, JSON
  (`json_files/`) or CSV (`csv_files/`) with one row per clip, audio in `waveforms/`.

Each data set may come in its own layout. Detection looks only at where the metadata
files are; a data set found in no layout, in two, or in pieces of several is a
`DataError` naming the data set, what was found and the layouts expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tail_bench.errors import DataError

DATASETS = ("audiocaps", "clotho", "bbc", "audioset")  # the stream's order
SPLITS = ("train", "val", "test")
LAYOUTS = ("original", "aac-datasets", "wavcaps")
CLOTHO_SPLITS = {"train": "development", "val": "validation", "test": "evaluation"}
WAVCAPS_SOURCES = {"bbc": "BBC_Sound_Effects", "audioset": "AudioSet_SL"}
WAVCAPS_JSON = {"bbc": "bbc_final.json", "audioset": "as_final.json"}
# the original layout's AudioCaps file stems, tried in order (--audiocaps-pattern)
AUDIOCAPS_PATTERNS = ("Y{youtube_id}", "{youtube_id}", "{youtube_id}_{start_time}")

# How a layout's metadata is read (records.py has one reader per format):
# audiocaps-rows: audiocap_id,youtube_id,start_time,caption, one row per caption;
# clip-rows: one row per clip, a file name and its captions (CSV or WavCaps JSON);
# wavcaps-json: WavCaps' json_files, {"data": [{"id", "caption", ...}]}, split by hash.


@dataclass
class Found:
    """One data set's files in the layout it was found in."""

    dataset: str
    layout: str
    base: Path  # the data set's own folder under the root (audio must stay inside it)
    metadata: dict[str, Path]  # split -> file read (one file for every split: WavCaps json)
    audio: dict[str, Path]  # split -> the folder its audio files are in
    format: str
    stems: tuple[str, ...] = ()  # audiocaps-rows: the file stems tried, in order
    notes: list[str] = field(default_factory=list)

    def describe(self, root: Path) -> str:
        """What `prepare` prints: the layout, and every file and folder read."""
        rel = lambda p: os.path.relpath(p, root)  # noqa: E731
        files = sorted({rel(p) for p in self.metadata.values()})
        audio = sorted({rel(p) for p in self.audio.values()})
        text = (f"{self.dataset}: {self.layout} layout; read {', '.join(files)}; audio from "
                f"{', '.join(a + '/' for a in audio)}")
        return text + "".join(f" ({n})" for n in self.notes)


@dataclass
class Candidate:
    """Where one layout would put one data set's files; `present` says what exists."""

    layout: str
    base: Path
    metadata: dict[str, list[Path]]  # split -> files tried, the first that exists is read
    audio: dict[str, Path]
    format: str

    def found(self) -> dict[str, Path]:
        out = {}
        for split, options in self.metadata.items():
            hit = next((p for p in options if p.is_file()), None)
            if hit is not None:
                out[split] = hit
        return out

    def tried(self, root: Path) -> str:
        """The first split's files (the others' are named alike)."""
        first = next(iter(self.metadata.values()))
        return f"{' or '.join(os.path.relpath(p, root) for p in first)} ({self.layout})"


def _splits(make) -> dict[str, list[Path]]:
    return {s: make(s) for s in SPLITS}


def candidates(root: Path, dataset: str) -> list[Candidate]:
    """Every layout's idea of where `dataset` is, in the order of LAYOUTS."""
    root = Path(root)
    if dataset == "audiocaps":
        orig, aac, wc = root / "audiocaps", root / "AUDIOCAPS", root / "AudioCaps"
        rates = sorted(aac.glob("audio_*Hz")) if aac.is_dir() else []
        aac_audio = rates[0] if len(rates) == 1 else aac / "audio_<rate>Hz"
        return [
            Candidate("original", orig, _splits(lambda s: [orig / f"{s}.csv"]),
                      {s: orig / "audio" / s for s in SPLITS}, "audiocaps-rows"),
            Candidate("aac-datasets", aac,
                      _splits(lambda s: [aac / "csv_files_v1" / f"{s}.csv", aac / f"{s}.csv"]),
                      {s: aac_audio / s for s in SPLITS}, "audiocaps-rows"),
            Candidate("wavcaps", wc, _splits(lambda s: [wc / "json_files" / f"{s}.json",
                                                        wc / "csv_files" / f"{s}.csv"]),
                      {s: wc / "waveforms" / s for s in SPLITS}, "clip-rows"),
        ]
    if dataset == "clotho":
        orig, aac, wc = root / "clotho", root / "CLOTHO_v2.1", root / "Clotho"
        name = CLOTHO_SPLITS
        return [
            Candidate("original", orig,
                      _splits(lambda s: [orig / f"clotho_captions_{name[s]}.csv"]),
                      {s: orig / name[s] for s in SPLITS}, "clip-rows"),
            Candidate("aac-datasets", aac, _splits(
                lambda s: [aac / "clotho_csv_files" / f"clotho_captions_{name[s]}.csv"]),
                {s: aac / "clotho_audio_files" / name[s] for s in SPLITS}, "clip-rows"),
            Candidate("wavcaps", wc, _splits(lambda s: [wc / "json_files" / f"{s}.json",
                                                        wc / "csv_files" / f"{s}.csv"]),
                      {s: wc / "waveforms" / s for s in SPLITS}, "clip-rows"),
        ]
    source, file = WAVCAPS_SOURCES[dataset], WAVCAPS_JSON[dataset]
    orig, aac = root / "wavcaps", root / "WavCaps"
    return [
        Candidate("original", orig, {"all": [orig / "json_files" / source / file]},
                  dict.fromkeys(SPLITS, orig / "audio" / source), "wavcaps-json"),
        Candidate("aac-datasets", aac, {"all": [aac / "json_files" / source / file]},
                  dict.fromkeys(SPLITS, aac / "Audio" / source), "wavcaps-json"),
    ]


def _same_files(a: dict[str, Path], b: dict[str, Path]) -> bool:
    """Two layouts naming the same files (a case-insensitive file system)."""
    return a.keys() == b.keys() and all(os.path.samefile(a[k], b[k]) for k in a)


def detect(root: Path, dataset: str, *, audiocaps_patterns: tuple[str, ...] = ()) -> Found:
    """The one layout `dataset` is in under `root`, or a DataError of one line per problem."""
    root = Path(root)
    cands = candidates(root, dataset)
    hits = [(c, c.found()) for c in cands]
    complete = [(c, f) for c, f in hits if len(f) == len(c.metadata)]
    partial = [(c, f) for c, f in hits if f and len(f) < len(c.metadata)]
    if len(complete) == 2 and not partial and _same_files(complete[0][1], complete[1][1]):
        complete = complete[:1]
    expected = ", ".join(c.layout for c in cands)
    if not complete and not partial:
        more = ", and the same for val and test" if dataset in ("audiocaps", "clotho") else ""
        raise DataError(f"{dataset}: not found under {root}: tried "
                        f"{'; '.join(c.tried(root) for c in cands)}{more}; expected one of "
                        f"the layouts {expected} (docs/datasets.md)")
    if partial:
        c, f = partial[0]
        missing = [os.path.relpath(c.metadata[s][0], root) for s in c.metadata if s not in f]
        others = [f"{o.layout} has {', '.join(os.path.relpath(p, root) for p in g.values())}"
                  for o, g in hits if g and o is not c]
        raise DataError(f"{dataset}: incomplete {c.layout} layout under {root}: found "
                        f"{', '.join(os.path.relpath(p, root) for p in f.values())}, missing "
                        f"{', '.join(missing)}"
                        + (f"; {'; '.join(others)}: a data set must come in one layout"
                           if others else ""))
    if len(complete) > 1:
        raise DataError(f"{dataset}: found in {len(complete)} layouts under {root} ("
                        + "; ".join(c.tried(root) for c, _ in complete)
                        + "): keep one of them under --data-root")
    c, files = complete[0]
    return _with_audio(root, dataset, c, files, cands, audiocaps_patterns)


def _with_audio(root: Path, dataset: str, c: Candidate, files: dict[str, Path],
                cands: list[Candidate], audiocaps_patterns: tuple[str, ...]) -> Found:
    if dataset == "audiocaps" and c.layout == "aac-datasets":
        rates = sorted(p.name for p in c.base.glob("audio_*Hz"))
        if len(rates) != 1:
            raise DataError(f"audiocaps: aac-datasets layout under {root}: expected one audio "
                            f"folder AUDIOCAPS/audio_<rate>Hz, found "
                            f"{', '.join(rates) or 'none'}; keep the one to read")
    missing = sorted({s for s, folder in c.audio.items() if not folder.is_dir()})
    if missing:
        where = {os.path.relpath(c.audio[s], root) for s in missing}
        elsewhere = [f"{o.layout} audio is in {os.path.relpath(o.audio[missing[0]], root)}"
                     for o in cands if o is not c and o.audio[missing[0]].is_dir()]
        raise DataError(f"{dataset}: {c.layout} layout under {root} has its metadata but no "
                        f"audio folder {', '.join(sorted(where))}"
                        + (f" ({'; '.join(elsewhere)}: metadata and audio must come in one "
                           "layout)" if elsewhere else ""))
    notes = []
    if c.layout == "wavcaps":
        kinds = {p.parent.name for p in files.values()}
        if kinds == {"json_files"} and (c.base / "csv_files").is_dir():
            notes.append("csv_files/ not read: json_files/ holds the same rows")
        elif len(kinds) > 1:
            raise DataError(f"{dataset}: wavcaps layout under {root} mixes json_files/ and "
                            "csv_files/ across splits; give every split in one of them")
    stems: tuple[str, ...] = ()
    if c.format == "audiocaps-rows":
        stems = ("{youtube_id}_{start_time}",) if c.layout == "aac-datasets" else tuple(
            audiocaps_patterns or AUDIOCAPS_PATTERNS)
    split_files = ({s: files["all"] for s in SPLITS} if "all" in files else files)
    return Found(dataset, c.layout, c.base, split_files, dict(c.audio), c.format, stems, notes)


def detect_all(root: Path, datasets: tuple[str, ...] = DATASETS, *,
               audiocaps_patterns: tuple[str, ...] = ()) -> dict[str, Found]:
    """Every data set's layout; every data set that cannot be read is named, one per line."""
    found, errors = {}, []
    for d in datasets:
        try:
            found[d] = detect(root, d, audiocaps_patterns=audiocaps_patterns)
        except DataError as err:
            errors.append(str(err))
    if errors:
        raise DataError("\n".join(errors))
    return found
