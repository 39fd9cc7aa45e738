"""Check that tail-synth is a faithful proxy of the TAIL setting (figures, not a test: it trains).

    python benchmarks/validate_synth.py [--seeds 0 1 2] [--preset default|quick] [--device cpu]

Per data seed it builds the stream and trains with the suite's own machinery (the registered
strategies, `RetrievalTemplate`, `RetrievalEvaluator`): Finetune over the stream, a
single-domain Finetune expert per domain (Finetune's first step is the audiocaps one),
Joint, a single-domain prompts+heads expert per domain (`ptat`'s first step: frozen towers,
no distillation yet), and linear probes on the frozen towers. No continual method is run
across the stream. It prints one PASS/FAIL line per check with its figure: the mean over
seeds, then [min, max] over seeds (or a paired bootstrap 95% interval over clips and seeds),
then `N/M checks passed`; the exit code is 1 on any FAIL. Figures that are not gated (Joint
against the experts) print as INFO. Every retrieval figure is t2a R@1 (%), as the checks are
stated. docs/tail-synth.md gives the reasons for each threshold and the figures of the last
full run.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tail_bench import config
from tail_bench.evaluation.bootstrap import ClipScores, paired_difference
from tail_bench.evaluation.evaluator import Evaluation, RetrievalEvaluator
from tail_bench.models.builder import build_backbone
from tail_bench.models.configs import get_config
from tail_bench.models.dual import DualEncoder
from tail_bench.presets import Preset, get_preset
from tail_bench.record import value
from tail_bench.runner import resolve_device, seed_everything
from tail_bench.streams import synth
from tail_bench.streams.registry import build_stream
from tail_bench.streams.stream import Stream, reorder
from tail_bench.training.registry import available_strategies
from tail_bench.training.template import RetrievalTemplate

RATIO = (0.3, 0.8)  # zero-shot / expert: a real CLAP on the TAIL sets is about 0.5-0.8
# Probe skill, (balanced accuracy - chance) / (1 - chance): which sounds are present must be
# read at least half-way from chance to perfect; pitch and tempo are relative to each sound
# (a high dog is lower than a low bird), which a linear read-out of one pooled vector gets
# only in part, so 0.2 (60% on a balanced binary choice, > 3 standard errors at 300 clips).
PROBE_SKILL = {"sounds": 0.5, "pitch": 0.2, "tempo": 0.2}
DOMAIN_PROBE = 0.9  # accuracy telling the four channels apart on the same content
PROMPT_SHARE = 0.5  # prompts+heads expert / Finetune expert: frozen towers are not crippled
DUPLICATES = 0.05  # share of a test set's captions that repeat another one


def r1(evaluation: Evaluation, name: str) -> float:
    return 100 * value(evaluation.scores[name]["t2a"]["R@1"])


def train(base: DualEncoder, name: str, stream: Stream, preset: Preset, device: torch.device,
          seed: int) -> list[Evaluation]:
    """Evaluations on `stream`'s test sets after each step of strategy `name` (as
    `tail-bench run` trains it: same template, learning rate, batch size and epochs)."""
    seed_everything(seed)
    cls = available_strategies()[name]
    strategy = cls()
    model = copy.deepcopy(base).to(device)
    strategy.setup(model)
    bench = stream.scenario(joint=cls.joint)
    template = RetrievalTemplate(model=model, strategy=strategy, lr=preset.lr,
                                 train_mb_size=preset.batch_size, train_epochs=preset.epochs,
                                 device=device, seed=seed)
    evaluator = RetrievalEvaluator(batch_size=max(preset.batch_size, 64), progress=False)
    rows = []
    for exp in bench.train_stream:
        template.train(exp)
        rows.append(evaluator.evaluate(model, bench.test_stream))
    return rows


@torch.no_grad()
def audio_features(model: DualEncoder, clips: np.ndarray) -> np.ndarray:
    """The frozen audio tower's pooled output (before the projection head)."""
    return torch.cat([model.audio(model.audio.features(torch.as_tensor(clips[i:i + 128])
                                                       .to(model.device))).cpu()
                      for i in range(0, len(clips), 128)]).numpy()


@torch.no_grad()
def text_features(model: DualEncoder, texts: list[str]) -> np.ndarray:
    return torch.cat([model.text(model.text.tokenize(texts[i:i + 256], model.device)).cpu()
                      for i in range(0, len(texts), 256)]).numpy()


def probe_skill(x_fit: np.ndarray, y_fit: list, x_test: np.ndarray, y_test: list) -> float:
    """A linear probe's (balanced accuracy - chance) / (1 - chance), chance = 1 / classes:
    0 is chance, 1 is perfect, whatever the class priors."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5,
                                                               class_weight="balanced"))
    probe.fit(x_fit, y_fit)
    chance = 1 / len(set(y_fit))
    return (balanced_accuracy_score(y_test, probe.predict(x_test)) - chance) / (1 - chance)


def presence_skill(x_fit: np.ndarray, sets_fit: list[set], x_test: np.ndarray,
                   sets_test: list[set]) -> float:
    """Mean probe skill at telling whether each sound is in the scene (sounds present in at
    least 5% of both splits): mixtures and tag lists have no single label."""
    skills = []
    for key in sorted(set().union(*sets_fit)):
        y_fit, y_test = [key in s for s in sets_fit], [key in s for s in sets_test]
        if min(np.mean(y_fit), np.mean(y_test)) >= 0.05:
            skills.append(probe_skill(x_fit, y_fit, x_test, y_test))
    return float(np.mean(skills))


def _sounds(s: synth.Scene) -> set[str]:
    """A scene's foreground sounds, the harsh sub-type apart (`dog*`)."""
    return {f"{e.concept.key}{'*' if e.harsh else ''}" for e in s.events}


def probes(model: DualEncoder, stream: Stream, seed: int) -> dict[str, float]:
    """Linear probes on the frozen towers, fit on a domain's train split, scored on its test
    split. Audio: which sounds are present, the pitch of the loudest one, and its tempo
    where it is sustained (a brief burst has none). Text: which sounds the scene holds."""
    out = {}
    domains = {d.key: d for d in synth.stream_domains(len(stream.datasets), seed)}
    for fit, test in zip(stream.train, stream.test, strict=True):
        d = domains[fit.dataset]
        data = {}
        for part, pairs in (("fit", fit), ("test", test)):
            scenes, captions, owners = synth.described(d, pairs.split, len(pairs.clip_ids),
                                                       seed=seed)
            data[part] = {"sounds": [_sounds(s) for s in scenes],
                          "pitch": [s.events[0].pitch for s in scenes],
                          "tempo": [s.events[0].tempo for s in scenes],
                          "sustained": [s.events[0].duration == "long" for s in scenes],
                          "caption sounds": [_sounds(scenes[o]) for o in owners],
                          "audio": audio_features(model, np.asarray(pairs.clips)),
                          "text": text_features(model, captions)}
        f, t = data["fit"], data["test"]
        out[f"{d.key} audio sounds"] = presence_skill(f["audio"], f["sounds"], t["audio"],
                                                      t["sounds"])
        out[f"{d.key} audio pitch"] = probe_skill(f["audio"], f["pitch"], t["audio"],
                                                  t["pitch"])
        fs, ts = np.asarray(f["sustained"]), np.asarray(t["sustained"])
        out[f"{d.key} audio tempo"] = probe_skill(f["audio"][fs], np.asarray(f["tempo"])[fs],
                                                  t["audio"][ts], np.asarray(t["tempo"])[ts])
        out[f"{d.key} text sounds"] = presence_skill(f["text"], f["caption sounds"],
                                                     t["text"], t["caption sounds"])
    return out


def channel_probe(model: DualEncoder, seed: int, seconds: float) -> float:
    """Accuracy of a linear probe telling the domains' channels apart on clips of the same
    content distribution (the pretraining scenes, recorded through each domain's channel)."""
    xs, ys = {"train": [], "test": []}, {"train": [], "test": []}
    for d in synth.DOMAINS:
        content = replace(synth.PRETRAIN_DOMAIN, key=f"channel-{d.key}", channels=d.channels)
        for split, n in (("train", 300), ("test", 200)):
            pairs = synth.generate(content, split, n, seconds=seconds, seed=seed, n_captions=1)
            xs[split].append(audio_features(model, pairs.clips))
            ys[split] += [d.key] * n
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    probe.fit(np.concatenate(xs["train"]), ys["train"])
    return float(np.mean(probe.predict(np.concatenate(xs["test"])) == np.asarray(ys["test"])))


def measure(seed: int, preset: Preset, base: DualEncoder, device: torch.device) -> dict:
    stream = build_stream("tail-synth", preset=preset, seed=seed,
                          clip_seconds=base.meta["clip_seconds"],
                          sample_rate=base.meta["sample_rate"])
    names = stream.datasets
    cfg = get_config(preset.backbone)
    known = synth.pretraining_texts(cfg.pretrain_clips, cfg.pretrain_texts,
                                    seed=cfg.pretrain_seed)
    step_text = [c for part in (stream.train, stream.val, stream.test) for p in part
                 for c in p.captions]
    evaluator = RetrievalEvaluator(batch_size=max(preset.batch_size, 64), progress=False)
    zero = evaluator.evaluate(base, stream.scenario().test_stream)
    finetune = train(base, "finetune", stream, preset, device, seed)
    joint = train(base, "joint", stream, preset, device, seed)[0]
    m = {"oov": len(synth.unseen_tokens(step_text, known)),
         "channel": channel_probe(base, seed, base.meta["clip_seconds"]),
         "finetune first": finetune[0].clips, "finetune last": finetune[-1].clips,
         **probes(base, stream, seed)}
    for i, (name, test) in enumerate(zip(names, stream.test, strict=True)):
        single = reorder(stream, [name])
        expert = finetune[0] if i == 0 else train(base, "finetune", single, preset, device,
                                                  seed)[0]
        prompted = train(base, "ptat", single, preset, device, seed)[0]
        m |= {f"{name} chance": 100 / len(test.clip_ids), f"{name} zero": r1(zero, name),
              f"{name} expert": r1(expert, name), f"{name} joint": r1(joint, name),
              f"{name} expert clips": expert.clips, f"{name} joint clips": joint.clips,
              f"{name} prompted": r1(prompted, name),
              f"{name} duplicates": synth.duplicate_captions(test),
              f"{name} captions": len(test.captions)}
    return m


def line(ok: bool | None, what: str, figure: str) -> bool | None:
    """One check's line; `ok` None is a figure that is printed, not gated."""
    verdict = "INFO" if ok is None else "PASS" if ok else "FAIL"
    print(f"{verdict}  {what:<62} {figure}", flush=True)
    return ok


def spread(values: list[float], fmt: str = ".2f") -> str:
    return f"{np.mean(values):{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"


def paired_r1(a: list[ClipScores], b: list[ClipScores], name: str) -> dict:
    """Mean over seeds of t2a R@1 on `name` of rows a minus rows b (points), with its paired
    bootstrap 95% interval over clips and seeds (the suite's own, as the tables use)."""
    d = paired_difference([[x] for x in a], [[y] for y in b], [name], "t2a", "R@1",
                          lambda m: m[..., 0, 0])
    return {"difference": 100 * d["difference"], "ci95": [100 * v for v in d["ci95"]],
            "significant": d["significant"]}


def interval_figure(d: dict) -> str:
    return f"{d['difference']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}] points"


def report(runs: list[dict], names: list[str]) -> list[bool]:
    def all_(key: str) -> list:
        return [r[key] for r in runs]

    def mean(key: str) -> float:
        return float(np.mean(all_(key)))

    oks = [line(max(all_("oov")) == 0, "out-of-vocabulary tokens in step captions",
                f"{sum(all_('oov'))} over {len(runs)} seeds")]
    for n in names:
        chain = [mean(f"{n} {k}") for k in ("chance", "zero", "expert")]
        oks.append(line(chain[0] < chain[1] < chain[2],
                        f"{n}: chance < zero-shot < expert (t2a R@1 %)",
                        " / ".join(f"{v:.1f}" for v in chain)))
    for n in names:
        gap = paired_r1(all_(f"{n} joint clips"), all_(f"{n} expert clips"), n)
        line(None, f"{n}: joint - expert (not gated: joint is not a ceiling)",
             interval_figure(gap))
    for n in names:
        ratios = [r[f"{n} zero"] / r[f"{n} expert"] for r in runs]
        oks.append(line(RATIO[0] <= np.mean(ratios) <= RATIO[1],
                        f"{n}: zero-shot / expert in [{RATIO[0]}, {RATIO[1]}]", spread(ratios)))
    for n in names:
        for side, targets in (("audio", ("sounds", "pitch", "tempo")), ("text", ("sounds",))):
            for t in targets:
                k = f"{n} {side} {t}"
                oks.append(line(mean(k) >= PROBE_SKILL[t],
                                f"{n}: frozen {side} probe decodes {t} (skill >= "
                                f"{PROBE_SKILL[t]})", spread(all_(k))))
    oks.append(line(mean("channel") >= DOMAIN_PROBE,
                    f"frozen audio probe tells the channels apart (acc >= {DOMAIN_PROBE})",
                    spread(all_("channel"))))
    for n in names:
        shares = [r[f"{n} prompted"] / r[f"{n} expert"] for r in runs]
        oks.append(line(np.mean(shares) >= PROMPT_SHARE,
                        f"{n}: prompts+heads expert / Finetune expert >= {PROMPT_SHARE}",
                        spread(shares)))
    forgetting = paired_r1(all_("finetune first"), all_("finetune last"), names[0])
    oks.append(line(forgetting["ci95"][0] > 0,
                    f"Finetune forgets {names[0]}: first - last > 0 (95%)",
                    interval_figure(forgetting)))
    for n in names:
        shares = [r[f"{n} duplicates"] / r[f"{n} captions"] for r in runs]
        oks.append(line(max(shares) <= DUPLICATES,
                        f"{n}: duplicate test captions <= {DUPLICATES:.0%}",
                        f"{spread(all_(f'{n} duplicates'), '.0f')} of "
                        f"{runs[0][f'{n} captions']}"))
    return oks


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run_flags = ("seeds", "preset", "device")
    config.add_arguments(p, only=run_flags)
    p.epilog = "Defaults: --seeds 0 1 2; the other run flags as `tail-bench run`'s."
    a = config.script_values(p.parse_args(argv), run_flags, seeds=[0, 1, 2])
    start = time.perf_counter()
    preset = get_preset(a["preset"])
    device = resolve_device(a["device"])
    base = build_backbone(preset.backbone, device=device, progress=False)
    runs = []
    for seed in a["seeds"]:
        runs.append(measure(seed, preset, base, device))
        print(f"seed {seed} done after {time.perf_counter() - start:.0f} s", flush=True)
    oks = report(runs, [d.key for d in synth.DOMAINS])
    print(f"{sum(oks)}/{len(oks)} checks passed (preset {preset.name}, seeds "
          f"{' '.join(map(str, a['seeds']))}, {time.perf_counter() - start:.0f} s)")
    sys.exit(0 if all(oks) else 1)


if __name__ == "__main__":
    main()
