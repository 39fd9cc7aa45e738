"""The suite under hostile input and faults: every case a user can cause gets one clear
line or a recorded status, never a silently wrong result or a raw traceback.

The data root (metadata rows, files whose headers lie); run files of the wrong shape;
write failures; damaged resume state; one writer per run directory."""

import errno
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tail_bench.cli import main
from tail_bench.streams.audio import AudioError, header_problem, load_clip
from tail_bench.streams.fixture import write_fixture
from tail_bench.streams.tail import DataError, prepare, read_all

AUDIO = {"sample_rate": 16_000, "clip_seconds": 0.5}


@pytest.fixture()
def root(tmp_path):
    return write_fixture(tmp_path / "root")


def _problems(root, tmp_path):
    code = prepare(root, **AUDIO, out=tmp_path / "p", progress=False)
    return code, json.loads((tmp_path / "p" / "prepare-report.json").read_text())["problems"]


def _append(path, text):
    path.write_text(path.read_text() + text)


def test_an_unquoted_comma_in_a_caption_is_a_bad_row_not_a_cut_caption(root, tmp_path):
    _append(root / "audiocaps" / "train.csv",
            "tr10,_x0001_q-1,30,a dog barks, then a car passes by loudly\n")
    code, problems = _problems(root, tmp_path)
    assert code == 1
    (p,) = problems
    assert (p["kind"], p["row"], p["item"]) == ("bad row", 14, "tr10")
    assert p["file"].endswith("audiocaps/train.csv")
    assert "5 fields, expected 4" in p["detail"] and "quote captions" in p["detail"]
    captions = [c for clip in read_all(root).data["audiocaps"]["train"].clips
                for c in clip.captions]
    assert "a dog barks" not in captions  # nothing kept of the broken row


@pytest.mark.parametrize("extra, fields", [(',"one more"', 7), ("", None)])
def test_a_clotho_row_with_too_many_or_too_few_fields_is_named(extra, fields, root,
                                                                 tmp_path):
    path = root / "clotho" / "clotho_captions_validation.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2] + extra if fields else '"Field rec, one.wav",one caption only'
    path.write_text("\n".join(lines) + "\n")
    code, problems = _problems(root, tmp_path)
    (p,) = problems
    assert (code, p["kind"], p["row"]) == (1, "bad row", 3)
    assert f"{fields or 2} fields, expected 6" in p["detail"]


def test_a_field_larger_than_the_csv_limit_is_named_with_its_row(root):
    path = root / "audiocaps" / "val.csv"
    _append(path, 'va9,zz,30,"' + "x" * 1_000_000 + '"\n')
    with pytest.raises(DataError, match=rf"{path}, row \d+: not readable CSV \(field larger "
                                        "than field limit"):
        read_all(root)


def test_a_non_utf8_wavcaps_json_is_named(root):
    path = root / "wavcaps" / "json_files" / "BBC_Sound_Effects" / "bbc_final.json"
    path.write_bytes(path.read_bytes().replace(b'"caption": "', b'"caption": "caf\xe9 ', 1))
    with pytest.raises(DataError, match=f"{path}: not UTF-8 text"):
        read_all(root)


def test_a_wavcaps_item_without_its_keys_is_a_bad_row(root, tmp_path):
    path = root / "wavcaps" / "json_files" / "AudioSet_SL" / "as_final.json"
    blob = json.loads(path.read_text())
    blob["data"][5] = {"id": "Yzzzzzzzzzzz.wav"}
    path.write_text(json.dumps(blob))
    _, problems = _problems(root, tmp_path)
    (p,) = problems
    assert (p["kind"], p["row"]) == ("bad row", 5)
    assert "expected keys 'id' and 'caption'" in p["detail"]


def test_the_same_audiocap_id_in_two_splits_is_reported(root, tmp_path):
    val = (root / "audiocaps" / "val.csv").read_text().splitlines()
    first_train_id = (root / "audiocaps" / "train.csv").read_text().splitlines()[1].split(",")[0]
    val[1] = ",".join([first_train_id, *val[1].split(",")[1:]])
    (root / "audiocaps" / "val.csv").write_text("\n".join(val) + "\n")
    _, problems = _problems(root, tmp_path)
    (p,) = problems
    assert (p["kind"], p["split"], p["item"]) == ("duplicate id", "val", first_train_id)
    assert p["detail"] == "also in audiocaps/train"


def _wav(path, frames=16_000, channels=1):
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal((frames, channels))
                    ).astype(np.float32), 16_000, subtype="PCM_16")
    return bytearray(path.read_bytes())


def test_a_header_promising_more_frames_than_the_file_holds(tmp_path):
    data = _wav(tmp_path / "ok.wav")
    (tmp_path / "short.wav").write_bytes(bytes(data[: len(data) // 2]))
    assert header_problem(tmp_path / "ok.wav") is None
    assert header_problem(tmp_path / "short.wav") == (
        "unreadable audio: the header promises 16000 frames, the file holds 7989")
    with pytest.raises(AudioError, match=r"short\.wav: unreadable audio: the header "
                                         "promises 16000 frames"):
        load_clip(tmp_path / "short.wav", sample_rate=16_000, seconds=1.0)


def test_a_false_channel_count_in_a_header(tmp_path):
    data = _wav(tmp_path / "mono.wav")
    data[22:24] = struct.pack("<H", 7)  # channels 7, blocks still of 2 bytes
    (tmp_path / "seven.wav").write_bytes(bytes(data))
    assert header_problem(tmp_path / "seven.wav") == (
        "unreadable audio: the header says 7 channels of 16 bits but blocks of 2 bytes")
    data[32:34] = struct.pack("<H", 14)  # blocks of 14 bytes too: the data is not whole
    (tmp_path / "seven.wav").write_bytes(bytes(data))
    assert "not whole frames of 7 channels" in header_problem(tmp_path / "seven.wav")
    with pytest.raises(AudioError, match="not whole frames of 7 channels"):
        load_clip(tmp_path / "seven.wav", sample_rate=16_000, seconds=0.5)


def test_lying_headers_in_a_data_root_are_problems_with_their_rows(root, tmp_path):
    folder = root / "clotho" / "evaluation"
    for take in (1, 3):
        wav = folder / f"Field rec, evaluation take {take} (stereo).wav"
        data = wav.read_bytes()
        wav.write_bytes(data[: len(data) // 2])
    code, problems = _problems(root, tmp_path)
    assert code == 1
    assert sorted((p["row"], p["kind"]) for p in problems) == [(3, "unreadable audio"),
                                                               (5, "unreadable audio")]
    assert all("the header promises" in p["detail"] for p in problems)


# --- run files of the wrong shape: one line naming the file -------------------------------

REFERENCE = Path(__file__).parent.parent / "results/reference/stream-length/runs/length-4"


@pytest.fixture()
def run_dir(tmp_path):
    """A copy of a shipped run directory (run.json and per-clip sums; no tables)."""
    out = tmp_path / "run"
    shutil.copytree(REFERENCE / "clips", out / "clips")
    shutil.copy(REFERENCE / "run.json", out / "run.json")
    return out


def _edit(run_dir, change):
    data = json.loads((run_dir / "run.json").read_text())
    change(data)
    (run_dir / "run.json").write_text(json.dumps(data))


def _error(argv) -> str:
    with pytest.raises(SystemExit) as err:
        main(argv)
    message = str(err.value)
    assert message.startswith("tail-bench: error: ") and "\n" not in message
    return message


def _unfinish_done(data):
    del data["runs"][1]["cost"]  # what an unfinished entry lacks, its status edited to done


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.update(stream={}), "'stream' must be an object with 'name'"),
    (lambda d: d.update(stream="tail-synth"), "'stream' must be an object with 'name'"),
    (lambda d: d["runs"][0].pop("rows"), "runs[0] (coda-prompt seed 0): expected 'rows'"),
    (lambda d: d["runs"][2]["rows"][1].pop("scores"), "runs[2] (ewc seed 0): "
                                                      "expected 'rows'"),
    (lambda d: d["runs"].__setitem__(0, "finetune"), "runs[0]: expected an object"),
    (lambda d: d["runs"][0].update(status="finished"),
     "runs[0] (coda-prompt seed 0): status 'finished': expected one of"),
    (_unfinish_done, "runs[1] (er seed 0): status 'done' without its 'cost'"),
    (lambda d: d.update(config=[]), "'config' must be an object"),
])
def test_report_names_a_run_file_of_the_wrong_shape(change, expected, run_dir):
    _edit(run_dir, change)
    message = _error(["report", str(run_dir)])
    assert f"{run_dir / 'run.json'}: {expected}" in message


def test_report_names_a_run_file_that_is_a_directory_or_a_symlink_loop(tmp_path):
    (tmp_path / "dir" / "run.json").mkdir(parents=True)
    assert "run.json: not a readable run file (Is a directory)" in _error(
        ["report", str(tmp_path / "dir")])
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "run.json").symlink_to(tmp_path / "loop" / "run.json")
    assert "run.json: not a readable run file (Too many levels of symbolic links)" in _error(
        ["report", str(tmp_path / "loop")])


def test_resume_names_an_empty_config_and_a_truncated_run_file(run_dir):
    _edit(run_dir, lambda d: d.update(config={}))
    message = _error(["run", "--resume", str(run_dir)])
    assert f"{run_dir / 'run.json'}: its 'config' has no strategy" in message
    text = (REFERENCE / "run.json").read_text()
    (run_dir / "run.json").write_text(text[: len(text) // 2])
    message = _error(["run", "--resume", str(run_dir)])
    assert f"{run_dir / 'run.json'}: not a readable run file: not valid JSON" in message
    assert "--config" not in message


# --- write failures: refused before any work, or `interrupted` and resumable -------------

RUN = ["--strategy", "finetune", "--preset", "quick", "--epochs", "1", "--no-progress",
       "--no-tensorboard", "--order", "audiocaps,clotho,bbc", "--backbone", "synth-tiny",
       "--report-every", "run"]


def _no_work(monkeypatch):
    import tail_bench.runner as runner

    def no_work(*a, **k):
        raise AssertionError("work started before the run directory was checked")

    monkeypatch.setattr(runner, "build_backbone", no_work)
    monkeypatch.setattr(runner, "build_stream", no_work)


def _unwritable(monkeypatch, folder, code=errno.EACCES):
    """Writes into `folder` fail as on a read-only mount (tests run as root, which
    permissions would not stop)."""
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve() == Path(folder).resolve():
            raise OSError(code, os.strerror(code), str(Path(dir) / "x.tmp"))
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_an_out_that_is_a_file_or_read_only_is_refused_before_any_work(tmp_path, monkeypatch):
    _no_work(monkeypatch)
    (tmp_path / "file").write_text("x")
    assert f"--out {tmp_path / 'file'}: {tmp_path / 'file'} is a file; expected a " \
           "directory" in _error(["run", *RUN, "--out", str(tmp_path / "file")])
    _unwritable(monkeypatch, tmp_path / "ro", errno.EROFS)
    assert f"--out {tmp_path / 'ro'}: {tmp_path / 'ro'} cannot be written (Read-only file " \
           "system)" in _error(["run", *RUN, "--out", str(tmp_path / "ro")])


def test_a_read_only_cache_is_refused_before_pretraining(tmp_path, monkeypatch):
    _no_work(monkeypatch)
    monkeypatch.setenv("TAIL_BENCH_CACHE", str(tmp_path / "cache"))  # no weights: pretrains
    _unwritable(monkeypatch, tmp_path / "cache" / "backbones")
    message = _error(["run", *RUN, "--out", str(tmp_path / "out")])
    assert f"the cache of pretrained backbones ($TAIL_BENCH_CACHE, {tmp_path / 'cache'}): " \
           f"{tmp_path / 'cache' / 'backbones'} cannot be written (Permission denied)" in message


def test_a_disk_without_room_for_a_checkpoint_is_refused_before_any_work(tmp_path,
                                                                         monkeypatch):
    import tail_bench.storage as storage

    _no_work(monkeypatch)
    monkeypatch.setattr(storage.shutil, "disk_usage",
                        lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 2**19, 2**19))
    message = _error(["run", *RUN, "--out", str(tmp_path / "out")])
    assert f"--out {tmp_path / 'out'}: 0.5 MiB free on its disk; a checkpoint needs about " \
           "0.8 MiB" in message


def test_report_and_prepare_into_a_read_only_out_are_one_line(run_dir, tmp_path, monkeypatch):
    _unwritable(monkeypatch, tmp_path / "ro")
    assert f"--out {tmp_path / 'ro'}: {tmp_path / 'ro'} cannot be written (Permission " \
           "denied)" in _error(["report", str(run_dir), "--out", str(tmp_path / "ro")])
    root = write_fixture(tmp_path / "root")
    assert f"--out {tmp_path / 'ro'}: {tmp_path / 'ro'} cannot be written" in _error(
        ["prepare", "--data-root", str(root), "--out", str(tmp_path / "ro")])
    _unwritable(monkeypatch, run_dir)  # report rewrites the tables in the run directory
    assert f"tail-bench: error: {run_dir / 'scores.csv'}: Permission denied" == _error(
        ["report", str(run_dir)])


class _Claimed(Exception):
    """Raised where work would start: the run got past its run directory's checks."""


def test_a_second_writer_is_refused_and_a_stale_lock_is_taken_over(tmp_path, monkeypatch):
    import tail_bench.runner as runner
    from tail_bench.storage import DirLock

    out = tmp_path / "out"
    held = DirLock(out)
    held.acquire("--out")
    try:
        _no_work(monkeypatch)
        message = _error(["run", *RUN, "--out", str(out)])
        assert f"--out {out}: another tail-bench process (pid {os.getpid()}) is writing " \
               "this run directory" in message
        shutil.copy(REFERENCE / "run.json", out / "run.json")
        assert f"--resume {out}: another tail-bench process" in _error(
            ["run", "--resume", str(out)])
    finally:
        held.release()
    (out / "run.json").unlink()
    # what a killed run leaves: the lock file (no lock: the kernel dropped it) and temporaries
    (out / ".lock").write_text("999999\n")
    (out / "clips").mkdir()
    stale = [out / ".run.json.k2j3.tmp", out / "clips" / ".finetune-s0.npz.x1.tmp"]
    for f in stale:
        f.write_text("half")

    def claimed(*a, **k):
        assert (out / ".lock").read_text() == f"{os.getpid()}\n"
        raise _Claimed

    monkeypatch.setattr(runner, "build_backbone", claimed)
    with pytest.raises(_Claimed):
        main(["run", *RUN, "--out", str(out)])
    assert not any(f.exists() for f in stale)
    again = DirLock(out)
    again.acquire("--out")  # released when the run ended
    again.release()


def test_gem_without_its_qp_solver_is_refused_before_any_work(tmp_path, monkeypatch):
    import qpsolvers

    _no_work(monkeypatch)
    monkeypatch.setattr(qpsolvers, "available_solvers", ["osqp"])
    message = _error(["run", *RUN, "--baselines",
                      "finetune+GEMPlugin(patterns_per_experience=4,memory_strength=0.5)",
                      "--out", str(tmp_path / "out")])
    assert "Avalanche plugin GEMPlugin needs the QP solver quadprog (qpsolvers has osqp); " \
           "install it: pip install quadprog" in message


def _rows(out):
    (entry,) = json.loads((out / "run.json").read_text())["runs"]
    return entry, [r["scores"] for r in entry["rows"]]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, _cache):
    """finetune over three steps, uninterrupted: the scores every resumed run must give."""
    out = tmp_path_factory.mktemp("faults") / "straight"
    main(["run", *RUN, "--out", str(out)])
    return _rows(out)[1]


def _full_disk(monkeypatch, name, at):
    """The `at`-th write of a file called `name` fails: no space left on the device."""
    import tail_bench.reporting.results as results
    import tail_bench.storage as storage
    import tail_bench.training.checkpoint as checkpoint

    real, calls = storage.atomic_write_bytes, [0]

    def write(path, data):
        if Path(path).name == name:
            calls[0] += 1
            if calls[0] == at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    for module in (storage, results, checkpoint):
        monkeypatch.setattr(module, "atomic_write_bytes", write)


@pytest.mark.parametrize("name, at, kept", [
    ("model.safetensors", 2, [0, 1, 2]),  # step 2's checkpoint: row 2 is recorded
    ("run.json", 4, [0, 1, 2]),  # the record of row 2 (the stop records it)
    ("finetune-s0.npz", 3, [0, 1]),  # row 2's per-clip sums: the row is not recorded
])
def test_a_full_disk_mid_run_interrupts_and_resume_continues(name, at, kept, straight,
                                                             tmp_path, monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _full_disk(m, name, at)
        message = _error(["run", *RUN, "--out", str(out)])
    assert f"cannot write {out}/" in message and f"{name}: No space left on device; " \
           f"stopped finetune (seed 0) after step {kept[-1]}; once fixed, finished steps " \
           f"are kept in {out}" in message
    entry, _ = _rows(out)
    assert entry["status"] == "interrupted" and [r["step"] for r in entry["rows"]] == kept
    assert entry["failure"]["message"].endswith(f"{name}: No space left on device")
    main(["run", "--resume", str(out), "--no-progress"])
    entry, scores = _rows(out)
    assert entry["status"] == "done" and scores == straight and "restarts" not in entry


# --- damaged resume state: named, and that entry computed again ---------------------------

@pytest.fixture(scope="module")
def stopped(tmp_path_factory, _cache):
    """finetune stopped after step 2 (its checkpoint could not be written): rows 0-2 in
    run.json, step 1's checkpoint on disk."""
    out = tmp_path_factory.mktemp("faults") / "stopped"
    with pytest.MonkeyPatch.context() as m:
        _full_disk(m, "model.safetensors", 2)
        with pytest.raises(SystemExit):
            main(["run", *RUN, "--out", str(out)])
    return out


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage, reason", [
    (lambda out: _flip(out / "checkpoints/finetune-s0/step-1/model.safetensors"),
     "checkpoints/finetune-s0/step-1/model.safetensors: its checksum differs from the one "
     "recorded when it was written"),
    (lambda out: shutil.rmtree(out / "checkpoints/finetune-s0/step-1"),
     "checkpoints/finetune-s0/step-1: missing"),
    (lambda out: _truncate(out / "clips/finetune-s0.npz"),
     "clips/finetune-s0.npz: missing or damaged"),
])
def test_damaged_resume_state_is_named_and_its_entry_computed_again(damage, reason, stopped,
                                                                   straight, tmp_path,
                                                                   capsys):
    out = tmp_path / "copy"
    shutil.copytree(stopped, out)
    damage(out)
    main(["run", "--resume", str(out), "--no-progress"])
    assert f"{reason}; finetune seed 0 starts again from step 0" in capsys.readouterr().err
    entry, scores = _rows(out)
    assert entry["status"] == "done" and scores == straight
    (restart,) = entry["restarts"]
    assert restart["reason"].endswith(reason)


def test_missing_per_clip_sums_are_reported_not_dropped(run_dir, capsys):
    (run_dir / "clips" / "er-s0.npz").unlink()
    _truncate(run_dir / "clips" / "ewc-s0.npz")
    main(["report", str(run_dir)])
    err = capsys.readouterr().err
    assert f"{run_dir / 'clips/er-s0.npz'}: missing; er seed 0 has no per-clip sums" in err
    assert f"{run_dir / 'clips/ewc-s0.npz'}: unreadable (" in err
    assert "Without per-clip sums (their file is missing or damaged), so without the " \
           "interval of a single run's mean and paired tests: er seed 0 (clips/er-s0.npz), " \
           "ewc seed 0 (clips/ewc-s0.npz)" in (run_dir / "tables.md").read_text()


def test_a_second_ctrl_c_while_the_tables_are_written_is_a_message(tmp_path, monkeypatch,
                                                                   capsys):
    import tail_bench.reporting.results as results

    def second_ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(results, "write_derived", second_ctrl_c)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        main(["run", *RUN, "--strategy", "interrupt-at-3", "--strategy-class",
              "plugin_strategy:InterruptAtStep3", "--report-every", "method", "--out",
              str(out)])
    assert err.value.code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"tail-bench: interrupted twice during interrupt-at-3 (seed 0) after step 2; "
        f"finished steps are kept in {out} (continue with `tail-bench run --resume {out}`); "
        f"`tail-bench report {out}` rebuilds the tables")
    entry, _ = _rows(out)
    assert entry["status"] == "interrupted" and [r["step"] for r in entry["rows"]] == [0, 1, 2]
