"""The real-format loaders on data roots the tests write (tail_bench.streams.fixture)."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from tail_bench.cli import main
from tail_bench.streams.audio import AudioFiles, load_clip
from tail_bench.streams.fixture import write_fixture
from tail_bench.streams.tail import DataError, build_tail, hash_split, prepare


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("tail") / "root")


def _report(out):
    return json.loads((out / "prepare-report.json").read_text())


def test_clean_root_reads_every_format(clean_root, tmp_path):
    assert prepare(clean_root, out=tmp_path, progress=False) == 0
    r = _report(tmp_path)
    s = r["splits"]
    assert (s["audiocaps/train"]["clips"], s["audiocaps/train"]["captions"]) == (12, 12)
    assert (s["audiocaps/test"]["clips"], s["audiocaps/test"]["captions"]) == (6, 30)
    assert (s["clotho/train"]["clips"], s["clotho/train"]["captions"]) == (12, 60)
    assert sum(s[f"bbc/{x}"]["clips"] for x in ("train", "val", "test")) == 60
    # two AudioSet clips come from AudioCaps test videos: removed from AudioSet train; two
    # from AudioCaps train videos hash into AudioSet's test and val: removed from those
    removed = {(x["removed_from"], x["because_in"]): x["clips"]
               for x in r["notes"]["overlap_removed"]}
    assert removed == {("audioset/train", "audiocaps/test"): 2,
                       ("audioset/val", "audiocaps/train"): 1,
                       ("audioset/test", "audiocaps/train"): 1}
    assert sum(s[f"audioset/{x}"]["clips"] for x in ("train", "val", "test")) == 56
    assert r["problems"] == []


def test_no_recording_is_in_a_training_and_an_evaluation_split(clean_root):
    from tail_bench.streams.tail import read_all, source_id

    data, _ = read_all(clean_root)
    train = {source_id(d, c) for d in data for c in data[d]["train"].clips}
    held_out = {source_id(d, c) for d in data for s in ("val", "test")
                for c in data[d][s].clips}
    assert not train & held_out
    assert len(data["audiocaps"]["test"].clips) == 6  # published test sets stay whole


def test_hash_split_is_deterministic_and_roughly_80_10_10():
    parts = [hash_split(f"id{i}") for i in range(2000)]
    assert parts == [hash_split(f"id{i}") for i in range(2000)]
    assert 0.75 < parts.count("train") / 2000 < 0.85
    assert 0.07 < parts.count("test") / 2000 < 0.13


@pytest.mark.parametrize("kind, problem, file_end, row", [
    ("missing-file", "missing audio", "clotho_captions_evaluation.csv", 4),
    ("outside-path", "path outside data root", "clotho_captions_evaluation.csv", 3),
    ("empty-audio", "empty audio", "bbc_final.json", 2),
    ("corrupt-file", "unreadable audio", "bbc_final.json", 1),
    ("empty-caption", "empty caption", "audiocaps/train.csv", 4),
    ("duplicate-id", "duplicate id", "audiocaps/train.csv", 14),
])
def test_each_problem_is_reported_with_file_and_row(kind, problem, file_end, row, tmp_path):
    root = write_fixture(tmp_path / "root", breaks=(kind,))
    assert prepare(root, out=tmp_path / "fail", progress=False) == 1
    (p,) = _report(tmp_path / "fail")["problems"]
    assert (p["kind"], p["row"]) == (problem, row) and p["file"].endswith(file_end)
    with pytest.raises(DataError, match=f"row {row}: {problem}"):
        build_tail(root, sample_rate=16_000, clip_seconds=1.0)
    # skip: the item is dropped, recorded, and everything else stays
    assert prepare(root, policy="skip", out=tmp_path / "skip", progress=False) == 0
    skipped = list(csv.DictReader((tmp_path / "skip" / "skipped.csv").open()))
    assert [s["kind"] for s in skipped] == [problem]
    split = f"{p['dataset']}/{p['split']}"
    s = _report(tmp_path / "skip")["splits"][split]
    assert s["usable_clips"] == s["clips"] - 1
    stream = build_tail(root, sample_rate=16_000, clip_seconds=1.0, policy="skip")
    assert [x["kind"] for x in stream.notes["skipped"]] == [problem]


def test_missing_column_stops_with_the_expected_columns(tmp_path):
    root = write_fixture(tmp_path / "root", breaks=("missing-column",))
    with pytest.raises(DataError, match=r"train.csv: missing column\(s\) caption; expected "
                                        r"columns audiocap_id,youtube_id,start_time,caption"):
        prepare(root, out=tmp_path, progress=False)


def test_load_clip_mixes_down_resamples_and_pads(tmp_path):
    rate = 44_100
    t = np.arange(int(0.5 * rate)) / rate
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    sf.write(tmp_path / "s.wav", np.stack([tone, tone], 1), rate)  # stereo, 44.1 kHz, 0.5 s
    clip = load_clip(tmp_path / "s.wav", sample_rate=16_000, seconds=1.0)
    assert clip.shape == (16_000,) and clip.dtype == np.float32
    assert np.all(clip[8_100:] == 0)  # padded after 0.5 s
    spectrum = np.abs(np.fft.rfft(clip[:8_000]))
    assert abs(np.argmax(spectrum) * 16_000 / 8_000 - 1000) <= 2  # still a 1 kHz tone
    (tmp_path / "bad.flac").write_bytes(b"fLaC" + bytes(64))
    with pytest.raises(ValueError, match=r"bad\.flac: unreadable audio"):
        load_clip(tmp_path / "bad.flac", sample_rate=16_000, seconds=1.0)


def test_cache_matches_decoding_and_goes_stale(tmp_path, clean_root):
    files = sorted((clean_root / "clotho" / "evaluation").glob("*.wav"))
    src = AudioFiles(files, sample_rate=16_000, seconds=1.0, cache=tmp_path / "c" / "clotho")
    assert not src.cache_is_fresh()
    direct = [src[i] for i in range(len(src))]
    assert src.build_cache(progress=False) == []
    again = AudioFiles(files, sample_rate=16_000, seconds=1.0, cache=tmp_path / "c" / "clotho")
    assert again.cache_is_fresh() and again._array is not None
    # the cache serves 16-bit PCM: within half a 16-bit step of decoding
    cached = np.stack([again[i] for i in range(len(again))])
    assert cached.dtype == np.int16
    np.testing.assert_allclose(np.stack(direct), cached / 32768, atol=1 / 65536, rtol=0)
    other = AudioFiles(files, sample_rate=22_050, seconds=1.0, cache=tmp_path / "c" / "clotho")
    assert not other.cache_is_fresh()  # keyed by the front end's settings
    sf.write(files[0], np.zeros(1000, dtype=np.float32), 44_100)
    assert not AudioFiles(files, sample_rate=16_000, seconds=1.0,
                          cache=tmp_path / "c" / "clotho").cache_is_fresh()


def test_run_on_the_real_formats(clean_root, tmp_path, _cache):
    out = tmp_path / "run"
    main(["run", "--benchmark", "tail", "--data-root", str(clean_root), "--strategy", "ptat",
          "--preset", "quick", "--epochs", "1", "--workers", "1", "--out", str(out),
          "--no-progress"])
    run = json.loads((out / "run.json").read_text())
    assert run["stream"]["datasets"] == ["audiocaps", "clotho", "bbc", "audioset"]
    assert run["stream"]["splits"]["audiocaps"]["test"] == {"clips": 6, "captions": 30}
    assert [r["step"] for r in run["runs"][0]["rows"]] == [0, 1, 2, 3, 4]
