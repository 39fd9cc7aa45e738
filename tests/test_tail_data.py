"""The real-format loaders on data roots the tests write (tail_bench.streams.fixture)."""

import csv
import json
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from tail_bench.cli import main
from tail_bench.errors import ConfigError
from tail_bench.streams import fixture
from tail_bench.streams.audio import load_clip
from tail_bench.streams.fixture import write_fixture
from tail_bench.streams.tail import DataError, build_tail, hash_split, prepare, read_all

AUDIO = {"sample_rate": 16_000, "clip_seconds": 0.5}


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("tail") / "root")


def _report(out):
    return json.loads((out / "prepare-report.json").read_text())


def test_clean_root_reads_every_format(clean_root, tmp_path):
    assert prepare(clean_root, **AUDIO, out=tmp_path, progress=False) == 0
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
    from tail_bench.streams.tail import source_id

    data = read_all(clean_root).data
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
    assert prepare(root, **AUDIO, out=tmp_path / "fail", progress=False) == 1
    (p,) = _report(tmp_path / "fail")["problems"]
    assert (p["kind"], p["row"]) == (problem, row) and p["file"].endswith(file_end)
    with pytest.raises(DataError, match=f"row {row}: {problem}"):
        build_tail(root, sample_rate=16_000, clip_seconds=1.0)
    # skip: the item is dropped, recorded, and everything else stays
    assert prepare(root, **AUDIO, policy="skip", out=tmp_path / "skip",
                   progress=False) == 0
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
        prepare(root, **AUDIO, out=tmp_path, progress=False)


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


def test_run_on_the_real_formats(clean_root, tmp_path, _cache):
    out = tmp_path / "run"
    main(["run", "--stream", "tail", "--data-root", str(clean_root), "--strategy", "ptat",
          "--preset", "quick", "--epochs", "1", "--workers", "1", "--out", str(out),
          "--no-progress"])
    run = json.loads((out / "run.json").read_text())
    assert run["stream"]["datasets"] == ["audiocaps", "clotho", "bbc", "audioset"]
    assert run["stream"]["splits"]["audiocaps"]["test"] == {"clips": 6, "captions": 30}
    assert [r["step"] for r in run["runs"][0]["rows"]] == [0, 1, 2, 3, 4]


# --- layouts: the same data in every layout users have ----------------------------------

SAME_DATA_BREAKS = ("missing-file", "corrupt-file", "empty-caption", "empty-audio")
MIXED = "audiocaps=aac-datasets,clotho=wavcaps,bbc=original,audioset=aac-datasets"


def _stream_of(root):
    stream = build_tail(root, sample_rate=16_000, clip_seconds=0.5, policy="skip")
    parts = {(p.dataset, p.split): (p.clip_ids, p.captions, p.caption_clip,
                                    np.stack([p.clips[i] for i in range(len(p.clip_ids))]))
             for ps in (stream.train, stream.val, stream.test) for p in ps}
    skipped = sorted((s["dataset"], s["split"], s["kind"], s["clip"])
                     for s in stream.notes["skipped"])
    return parts, stream.notes["overlap_removed"], skipped, stream.notes["layouts"]


@pytest.fixture(scope="module")
def original_stream(tmp_path_factory):
    root = write_fixture(tmp_path_factory.mktemp("orig") / "root", breaks=SAME_DATA_BREAKS)
    return _stream_of(root)


@pytest.mark.parametrize("layout", ["aac-datasets", "wavcaps", MIXED])
def test_every_layout_gives_the_identical_stream(layout, original_stream, tmp_path):
    """Clip ids, captions, their order, the decoded audio, the splits, the overlap removed
    and the skipped items (by clip: files and rows are the layout's own) are the same."""
    root = write_fixture(tmp_path / "root", layout=layout, breaks=SAME_DATA_BREAKS,
                         hf_cache=tmp_path / "hf")  # aac-datasets: WavCaps/ links out of root
    parts, overlap, skipped, layouts = _stream_of(root)
    want_parts, want_overlap, want_skipped, _ = original_stream
    assert parts.keys() == want_parts.keys()
    for key, (ids, caps, owner, audio) in parts.items():
        w_ids, w_caps, w_owner, w_audio = want_parts[key]
        assert (ids, caps, owner) == (w_ids, w_caps, w_owner), key
        np.testing.assert_array_equal(audio, w_audio)
    assert overlap == want_overlap and len(overlap) == 3
    assert skipped == want_skipped
    assert sorted(k for _, _, k, _ in skipped) == sorted(
        ["missing audio", "unreadable audio", "empty caption", "empty audio"])
    expected = fixture.layouts_of(layout)
    assert layouts == expected and set(expected.values()) != {"original"}


def test_prepare_names_each_layout_and_the_files_it_read(tmp_path, capsys):
    root = write_fixture(tmp_path / "root", layout=MIXED, hf_cache=tmp_path / "hf")
    assert prepare(root, **AUDIO, out=tmp_path / "p",
                   progress=False) == 0
    out = capsys.readouterr().out
    assert ("audiocaps: aac-datasets layout; read AUDIOCAPS/csv_files_v1/test.csv, "
            "AUDIOCAPS/csv_files_v1/train.csv, AUDIOCAPS/csv_files_v1/val.csv; audio from "
            "AUDIOCAPS/audio_32000Hz/test/") in out
    assert "clotho: wavcaps layout; read Clotho/json_files/test.json" in out
    assert "(csv_files/ not read: json_files/ holds the same rows)" in out
    assert "bbc: original layout; read wavcaps/json_files/BBC_Sound_Effects/bbc_final.json" in out
    assert "audioset: aac-datasets layout; read WavCaps/json_files/AudioSet_SL/as_final.json" in out
    report = _report(tmp_path / "p")
    assert report["notes"]["layouts"] == fixture.layouts_of(MIXED)


def _layout_error(root) -> str:
    with pytest.raises(DataError) as err:
        read_all(root)
    return str(err.value)


def test_an_unrecognised_data_set_gets_one_line_with_the_paths_tried(tmp_path):
    root = write_fixture(tmp_path / "root")
    shutil.rmtree(root / "clotho")
    (root / "clotho").mkdir()
    msg = _layout_error(root)
    assert msg.count("\n") == 0 and msg.startswith("clotho: not found under")
    for tried in ("clotho/clotho_captions_development.csv (original)",
                  "CLOTHO_v2.1/clotho_csv_files/clotho_captions_development.csv "
                  "(aac-datasets)", "Clotho/json_files/train.json", "Clotho/csv_files/train.csv"):
        assert tried in msg
    assert "expected one of the layouts original, aac-datasets, wavcaps" in msg
    shutil.rmtree(root / "wavcaps")  # two data sets missing: one line each
    assert _layout_error(root).count("\n") == 2


def test_a_data_set_half_in_one_layout_and_half_in_another_is_refused(tmp_path):
    root = write_fixture(tmp_path / "root")
    aac = root / "AUDIOCAPS" / "csv_files_v1"
    aac.mkdir(parents=True)
    shutil.move(root / "audiocaps" / "val.csv", aac / "val.csv")
    msg = _layout_error(root)
    assert "audiocaps: incomplete original layout" in msg and "missing audiocaps/val.csv" in msg
    assert "aac-datasets has AUDIOCAPS/csv_files_v1/val.csv: a data set must come in one " \
           "layout" in msg and "\n" not in msg


def test_metadata_in_one_layout_and_audio_in_another_is_named(tmp_path):
    root = write_fixture(tmp_path / "root")
    (root / "CLOTHO_v2.1").mkdir()
    shutil.move(root / "clotho" / "evaluation", root / "CLOTHO_v2.1" / "clotho_audio_files")
    (root / "CLOTHO_v2.1" / "clotho_audio_files" / "evaluation").mkdir(parents=True)
    msg = _layout_error(root)
    assert "clotho: original layout under" in msg and "no audio folder clotho/evaluation" in msg


def test_a_data_set_in_two_complete_layouts_is_refused(tmp_path):
    root = write_fixture(tmp_path / "root")
    write_fixture(tmp_path / "other", layout="wavcaps")
    shutil.copytree(tmp_path / "other" / "AudioCaps", root / "AudioCaps")
    msg = _layout_error(root)
    assert msg.startswith("audiocaps: found in 2 layouts") and "keep one of them" in msg


def test_aac_datasets_audio_at_two_rates_is_refused(tmp_path):
    root = write_fixture(tmp_path / "root", layout="aac-datasets", hf_cache=tmp_path / "hf")
    shutil.copytree(root / "AUDIOCAPS" / "audio_32000Hz", root / "AUDIOCAPS" / "audio_16000Hz")
    msg = _layout_error(root)
    assert "found audio_16000Hz, audio_32000Hz; keep the one to read" in msg


# --- files that are not what they seem ---------------------------------------------------

def test_a_dangling_link_and_an_empty_file_are_problems_named_with_their_row(tmp_path):
    root = write_fixture(tmp_path / "root")
    folder = root / "clotho" / "evaluation"
    target = folder / "Field rec, evaluation take 3 (stereo).wav"
    target.unlink()
    os.symlink(tmp_path / "gone.wav", target)
    (folder / "Field rec, evaluation take 4 (stereo).wav").write_bytes(b"")
    assert prepare(root, **AUDIO, out=tmp_path / "p",
                   progress=False) == 1
    problems = {(p["row"], p["kind"]): p["detail"] for p in _report(tmp_path / "p")["problems"]}
    assert set(problems) == {(5, "missing audio"), (6, "unreadable audio")}
    assert "is a link to" in problems[5, "missing audio"]


def test_a_link_leaving_the_data_set_is_never_read(tmp_path):
    root = write_fixture(tmp_path / "root")
    wav = root / "clotho" / "evaluation" / "Field rec, evaluation take 1 (stereo).wav"
    shutil.move(wav, tmp_path / "elsewhere.wav")
    os.symlink(tmp_path / "elsewhere.wav", wav)
    assert prepare(root, **AUDIO, out=tmp_path / "p",
                   progress=False) == 1
    (p,) = _report(tmp_path / "p")["problems"]
    assert (p["kind"], p["row"]) == ("path outside data root", 3)
    assert "elsewhere.wav, outside" in p["detail"]


def test_a_file_at_another_rate_and_channel_count_is_decoded_as_itself(tmp_path):
    """Siblings are 44.1 kHz stereo; one 22.05 kHz mono file is read at its own rate."""
    root = write_fixture(tmp_path / "root")
    wav = root / "clotho" / "evaluation" / "Field rec, evaluation take 0 (stereo).wav"
    stereo, rate = sf.read(wav)
    mono = stereo.mean(axis=1)
    sf.write(wav, mono[::2], rate // 2)
    stream = build_tail(root, sample_rate=16_000, clip_seconds=0.5)
    clotho = next(p for p in stream.test if p.dataset == "clotho")
    got = clotho.clips[clotho.clip_ids.index(wav.name)]
    want = load_clip(wav, sample_rate=16_000, seconds=0.5)
    np.testing.assert_array_equal(got, want)
    written, _ = sf.read(wav, dtype="float32")  # the whole file, resampled
    reference = torchaudio.functional.resample(torch.from_numpy(written), rate // 2,
                                               16_000).numpy()[:8000]
    np.testing.assert_allclose(got, reference, atol=1e-6, rtol=0)


@pytest.mark.parametrize("pattern, expected", [("{nope}", "unknown field {nope}"),
                                               ("{0}", "unknown field {0}"),
                                               ("clip_{start_time}", "no {youtube_id}"),
                                               ("{youtube_id", "expected '}'")])
def test_a_bad_audiocaps_pattern_is_refused_in_one_line(pattern, expected, clean_root):
    with pytest.raises(ConfigError, match=re.escape(expected)) as err:
        read_all(clean_root, patterns=(pattern,))
    assert f"--audiocaps-pattern {pattern!r}" in str(err.value)
