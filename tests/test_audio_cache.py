"""The decoded-audio cache (tail_bench.streams.cache): parallel, resumable, locked, and
only ever read at the settings and for the files it was built for."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tail_bench import progress
from tail_bench.errors import DataError
from tail_bench.streams import cache as audio_cache
from tail_bench.streams.audio import AudioFiles, load_clip
from tail_bench.streams.cache import build, built_settings, cache_for, writing
from tail_bench.streams.fixture import write_fixture
from tail_bench.streams.tail import build_tail, prepare

RATE, SECONDS = 16_000, 0.25


@pytest.fixture()
def files(tmp_path):
    """Files of every kind the loaders meet: rates, channels, formats, lengths."""
    rng = np.random.default_rng(0)
    out = []
    for i, (rate, channels, ext) in enumerate([(44_100, 2, "wav"), (16_000, 1, "flac"),
                                               (48_000, 1, "flac"), (22_050, 2, "ogg")] * 5):
        path = tmp_path / "audio" / f"clip {i}.{ext}"
        path.parent.mkdir(exist_ok=True)
        n = int(rate * (0.1 + 0.05 * i))  # some shorter than the clip, some longer
        sf.write(path, (0.2 * rng.standard_normal((n, channels))).astype(np.float32), rate)
        out.append(path)
    return out


def _built(folder, files, workers):
    cache = cache_for(folder, "x", "train", RATE, SECONDS)
    assert build([(cache, files)], workers=workers, progress=False) == {"x-train": {}}
    data, rows, failed = cache.lookup(files)
    assert failed == {}
    return np.load(data)[[rows[str(f)] for f in files]]


def test_parallel_build_equals_serial_build_equals_decoding(files, tmp_path):
    serial = _built(tmp_path / "one", files, workers=1)
    parallel = _built(tmp_path / "two", files, workers=2)
    np.testing.assert_array_equal(serial, parallel)
    decoded = np.stack([load_clip(f, sample_rate=RATE, seconds=SECONDS) for f in files])
    np.testing.assert_allclose(serial / 32768, decoded, atol=1 / 65536, rtol=0)
    # a run's clips come from the cache as 16-bit PCM, in the run's own order
    source = AudioFiles(files[::-1], sample_rate=RATE, seconds=SECONDS,
                        cached=(lambda d, r, _: (d, [r[str(f)] for f in files[::-1]]))(
                            *cache_for(tmp_path / "one", "x", "train", RATE,
                                       SECONDS).lookup(files)))
    assert source[0].dtype == np.int16
    np.testing.assert_array_equal(source[0], serial[-1])


def test_a_killed_build_resumes_where_it_stopped_and_is_never_taken_as_complete(
        files, tmp_path, monkeypatch):
    real, decoded = audio_cache._decode_rows, []

    def dies_on_third_chunk(data, offset, samples, rows, *rest):
        if len(decoded) == 2:
            raise KeyboardInterrupt
        decoded.append(len(rows))
        return real(data, offset, samples, rows, *rest)

    monkeypatch.setattr(audio_cache, "_decode_rows", dies_on_third_chunk)
    cache = cache_for(tmp_path, "x", "train", RATE, SECONDS)
    with pytest.raises(KeyboardInterrupt):
        build([(cache, files)], workers=1, chunk=1, progress=False)
    assert cache.lookup(files) is None and built_settings(tmp_path) == []  # not complete
    assert list(cache.folder.glob("x-train.partial.json"))

    counted = []
    monkeypatch.setattr(audio_cache, "_decode_rows",
                        lambda *a: counted.append(len(a[3])) or real(*a))
    build([(cache, files)], workers=1, progress=False)
    assert sum(counted) == len(files) - sum(decoded)  # only what was not done before
    resumed = np.load(cache.lookup(files)[0])
    np.testing.assert_array_equal(resumed, _built(tmp_path / "clean", files, workers=1))
    assert built_settings(tmp_path) == [(RATE, SECONDS)]
    assert not list(cache.folder.glob("*.partial.json")) + list(cache.folder.glob("*.log"))


def test_a_second_builder_is_refused_and_the_cache_stays_valid(files, tmp_path):
    cache = cache_for(tmp_path, "x", "train", RATE, SECONDS)
    with writing(cache.folder):  # another prepare holds the folder
        with pytest.raises(DataError, match=r"another `tail-bench prepare` \(pid \d+\) is "
                                            "writing this decoded-audio cache"):
            build([(cache, files)], workers=1, progress=False)
        assert cache.lookup(files) is None
    build([(cache, files)], workers=1, progress=False)
    assert cache.lookup(files) is not None


def test_a_changed_file_makes_its_split_stale(files, tmp_path):
    cache = cache_for(tmp_path, "x", "train", RATE, SECONDS)
    build([(cache, files)], workers=1, progress=False)
    assert cache.lookup(files[:3]) is not None  # any subset of the files is served
    sf.write(files[1], np.zeros(100, dtype=np.float32), 16_000)
    assert cache.lookup(files) is None and cache.lookup([files[0]]) is not None
    assert cache_for(tmp_path, "x", "train", RATE, 0.5).lookup(files[:1]) is None


def test_no_room_is_refused_before_anything_is_written(files, tmp_path, monkeypatch):
    monkeypatch.setattr(audio_cache.shutil, "disk_usage",
                        lambda p: type("U", (), {"free": 1000})())
    cache = cache_for(tmp_path, "x", "train", RATE, SECONDS)
    with pytest.raises(DataError, match=r"needs about 0\.0 GB more, and the disk has 0\.0 GB"):
        build([(cache, files)], workers=1, progress=False)
    assert not [p for p in cache.folder.iterdir() if p.name != ".lock"]


def test_a_damaged_data_file_is_named(files, tmp_path):
    cache = cache_for(tmp_path, "x", "train", RATE, SECONDS)
    build([(cache, files)], workers=1, progress=False)
    data, rows, _ = cache.lookup(files)
    data.write_bytes(data.read_bytes()[:-1000])
    with pytest.raises(DataError, match=f"{data}: unreadable decoded-audio cache"):
        AudioFiles(files, sample_rate=RATE, seconds=SECONDS,
                   cached=(data, [rows[str(f)] for f in files]))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("tail") / "root", breaks=("corrupt-file",))


def test_prepare_builds_the_cache_a_run_reads_and_its_failures_are_the_problems(
        root, tmp_path, capsys):
    assert prepare(root, sample_rate=RATE, clip_seconds=SECONDS, cache=True, workers=2,
                   policy="skip", out=tmp_path / "p", progress=False) == 0
    out = capsys.readouterr().out
    assert "decoded" in out and "clips/s, 2 workers" in out
    report = json.loads((tmp_path / "p" / "prepare-report.json").read_text())
    located = sum(s["clips"] - s["missing_audio"] for s in report["splits"].values())
    assert report["cache"]["clips"] == located and report["cache"]["workers"] == 2
    (problem,) = report["problems"]
    assert problem["kind"] == "unreadable audio" and problem["clip"] == "07066105"
    # the run reads every split from the cache, and takes the failure from its manifest
    stream = build_tail(root, sample_rate=RATE, clip_seconds=SECONDS, policy="skip")
    assert "decoded-audio cache" not in capsys.readouterr().err
    assert all(p.clips.cached is not None for ps in (stream.train, stream.val, stream.test)
               for p in ps)
    assert [s["clip"] for s in stream.notes["skipped"]] == ["07066105"]
    with pytest.raises(DataError, match="07066105"):
        build_tail(root, sample_rate=RATE, clip_seconds=SECONDS)  # policy fail


def test_a_cache_for_other_settings_is_refused_naming_both(root, tmp_path):
    prepare(root, sample_rate=RATE, clip_seconds=SECONDS, cache=True, workers=1,
            policy="skip", out=tmp_path / "p", progress=False)
    with pytest.raises(DataError) as err:
        build_tail(root, sample_rate=22_050, clip_seconds=1.0, policy="skip")
    msg = str(err.value)
    assert "built for 16000 Hz, 0.25 s clips, but the backbone reads 22050 Hz, 1 s clips" in msg
    assert "tail-bench prepare" in msg and "\n" not in msg


def test_a_run_with_a_cache_for_other_settings_stops_before_any_work(root, tmp_path, capsys):
    from tail_bench.cli import main

    prepare(root, sample_rate=RATE, clip_seconds=SECONDS, cache=True, workers=1,
            policy="skip", out=tmp_path / "p", progress=False)
    with pytest.raises(SystemExit) as err:  # synth-tiny reads 16 kHz, 2 s clips
        main(["run", "--stream", "tail", "--data-root", str(root), "--strategy",
              "finetune", "--preset", "quick", "--out", str(tmp_path / "run")])
    assert "but the backbone reads 16000 Hz, 2 s clips" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_progress_lines_give_the_rate_and_the_time_left():
    bar = progress.Lines(total=100, desc="decode", unit="clip", initial=20)
    bar.n = 60
    assert bar.line(10.0) == "decode: 60/100 (10 s, 4.0 clip/s, about 10 s left)"


def test_prepare_refuses_zero_workers(root, tmp_path):
    from tail_bench.cli import main

    with pytest.raises(SystemExit, match="--workers 0: expected an integer between 1 and 256"):
        main(["prepare", "--data-root", str(root), "--workers", "0", "--out",
              str(tmp_path / "p")])


def test_cache_files_are_where_the_docs_say(files, tmp_path):
    cache = cache_for(tmp_path, "audiocaps", "train", 48_000, 10.0)
    assert cache.folder == tmp_path / "48000Hz-10s-v3" and cache.name == "audiocaps-train"
    assert Path(os.path.relpath(cache.manifest_path, tmp_path)) == Path(
        "48000Hz-10s-v3/audiocaps-train.json")
