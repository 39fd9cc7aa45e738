"""Audio front-ends in torch: waveform batch (B, S) -> a tower's input features, batched, on
the wave's device (HF's extractors run clip by clip on the CPU, in numpy for CLAP: most of
a GPU training step).

- `LogMel`: the embedded towers' standardised log-mel.
- `ClapLogMel`: `ClapFeatureExtractor` for unfused CLAP (slaney mel, dB). The STFT and mel
  run in float64 with the spectrum rounded to complex64 between them, as HF computes it;
  this matters for quiet bins (pure tones): a float32 STFT is off by up to 0.14 dB there.
  Shorter inputs are padded as HF pads (`padding`: repeatpad, repeat or pad). Longer inputs:
  HF's `rand_trunc` takes a random crop; ours takes the first clip (CHOICE: deterministic,
  the crop the audio loader makes).
- `ClapFusionMel`: `ClapFeatureExtractor(truncation="fusion")` for fused CLAP (HTK mel).
  A clip that fits the window: its mel, one channel. A longer one: the whole clip's mel
  shrunk to the window, and three window-long crops from the front, middle and back thirds
  of the start positions. HF draws those starts at random; ours are drawn by a generator
  seeded afresh on every call (CHOICE: deterministic, the same crops for the same length).
- `ASTFbank`: `ASTFeatureExtractor` (Kaldi fbank with torchaudio's defaults, pad/truncate to
  `max_length` frames, AudioSet mean/std), all frames of all clips in one FFT.

`frontend_for(extractor)` is the one way to get the front-end of an HF extractor. Measured
differences to HF: docs/backbones.md and tests/test_frontends.py.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
import torchaudio
import torchaudio.compliance.kaldi as kaldi
from torch import Tensor, nn

from tail_bench.errors import BackboneError
from tail_bench.runtime import pcm_to_float


def expect_features(features: Tensor, dims: int) -> None:
    """Towers take features, not waves (their `forward` before the split did): say so."""
    if features.dim() != dims:
        raise ValueError(f"an audio tower takes {dims}-d features from its features(wave), "
                         f"got shape {tuple(features.shape)}")


class FrontEnd(nn.Module):
    """No autograd and no autocast whatever the caller runs under: the wave needs no gradient,
    and autocast would run the mel matmul in fp16, where power spectra overflow. A wave may
    arrive as 16-bit PCM (the decoded-audio cache), converted here, on its device."""

    def forward(self, wave: Tensor) -> Tensor:
        wave = pcm_to_float(wave)
        with torch.no_grad(), torch.autocast(wave.device.type, enabled=False):
            return self.compute(wave)

    def compute(self, wave: Tensor) -> Tensor:
        raise NotImplementedError


class LogMel(FrontEnd):
    """Waveform (B, S) -> per-clip standardised log-mel (B, frames, n_mels)."""

    def __init__(self, sample_rate: int, n_mels: int) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=400, hop_length=sample_rate // 100, n_mels=n_mels)

    def compute(self, wave: Tensor) -> Tensor:
        x = torch.log(self.mel(wave) + 1e-5).transpose(1, 2)
        return (x - x.mean((1, 2), keepdim=True)) / (x.std((1, 2), keepdim=True) + 1e-5)


CLAP_PADDING = ("repeatpad", "repeat", "pad")


class ClapLogMel(FrontEnd):
    """Waveform (B, S) -> CLAP `input_features` (B, 1, frames, n_mels) in dB."""

    def __init__(self, *, n_fft: int, hop_length: int, mel_filters: Tensor, clip_samples: int,
                 padding: str = "repeatpad") -> None:
        """mel_filters: (n_fft // 2 + 1, n_mels), the extractor's `mel_filters_slaney`."""
        super().__init__()
        if padding not in CLAP_PADDING:
            raise BackboneError(f"preprocessor_config.json: padding={padding!r}; expected one "
                                f"of {', '.join(CLAP_PADDING)}")
        self.n_fft, self.hop, self.clip, self.padding = n_fft, hop_length, clip_samples, padding
        self.register_buffer("window", torch.hann_window(n_fft, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("mel", torch.as_tensor(mel_filters, dtype=torch.float64).T.clone(),
                             persistent=False)

    def fit(self, wave: Tensor) -> Tensor:
        """Pad (as HF) or crop (the start) every clip to `clip_samples`."""
        n = wave.shape[-1]
        if n >= self.clip:
            return wave[:, : self.clip]
        if self.padding == "repeat":
            return wave.repeat(1, self.clip // n + 1)[:, : self.clip]
        if self.padding == "repeatpad":
            wave = wave.repeat(1, self.clip // n)
        return F.pad(wave, (0, self.clip - wave.shape[-1]))

    def mel_db(self, wave: Tensor) -> Tensor:
        """(B, S) -> the log-mel in dB of the whole wave, float64 (B, frames, n_mels)."""
        spec = torch.stft(wave.double(), self.n_fft, self.hop, window=self.window,
                          center=True, pad_mode="reflect", return_complex=True)
        spec = spec.to(torch.complex64).to(torch.complex128)  # HF stores the STFT as complex64
        power = spec.abs() ** 2
        return 10 * torch.log10((self.mel @ power).clamp_min(1e-10)).transpose(1, 2)

    def compute(self, wave: Tensor) -> Tensor:
        return self.mel_db(self.fit(wave)).unsqueeze(1).float()


class ClapFusionMel(ClapLogMel):
    """Waveform (B, S) -> fused CLAP `input_features`: (B, 1, frames, n_mels) when the clips
    fit the window (S at most clip_samples + hop - 1), else (B, 4, frames, n_mels)."""

    def __init__(self, *, seed: int = 0, **kwargs) -> None:
        """mel_filters: the extractor's HTK `mel_filters`. seed: the crops' generator."""
        super().__init__(**kwargs)
        self.seed = seed

    def starts(self, total: int, chunk: int) -> list[int]:
        """Start frames of the front, middle and back crops of a `total`-frame mel: the
        possible starts split in three as numpy's array_split does (an empty third falls
        back to 0, as HF's does), one drawn from each."""
        n = total - chunk + 1
        size, extra = divmod(n, 3)
        bounds = [0]
        for i in range(3):
            bounds.append(bounds[-1] + size + (i < extra))
        g = torch.Generator().manual_seed(self.seed)
        return [low + int(torch.randint(high - low, (1,), generator=g)) if high > low else 0
                for low, high in itertools.pairwise(bounds)]

    def compute(self, wave: Tensor) -> Tensor:
        if wave.shape[-1] <= self.clip:
            return super().compute(wave)
        mel = self.mel_db(wave)  # the whole clip, (B, total, n_mels)
        chunk = self.clip // self.hop + 1
        if mel.shape[1] == chunk:  # longer by less than a hop: HF takes it whole, unmarked
            return mel.unsqueeze(1).float()
        mel = mel.float()
        shrunk = F.interpolate(mel.unsqueeze(1), size=(chunk, mel.shape[-1]), mode="bilinear",
                               align_corners=False)
        crops = [mel[:, s: s + chunk].unsqueeze(1) for s in self.starts(mel.shape[1], chunk)]
        return torch.cat([shrunk, *crops], 1)


class ASTFbank(FrontEnd):
    """Waveform (B, S) -> AST `input_values` (B, max_length, n_mels): torchaudio's Kaldi fbank
    with the options ASTFeatureExtractor passes (hanning window, the rest default)."""

    def __init__(self, *, sample_rate: int, n_mels: int, max_length: int, mean: float,
                 std: float, normalize: bool = True) -> None:
        super().__init__()
        self.size = int(sample_rate * 0.025)  # 25 ms frames every 10 ms, as Kaldi's defaults
        self.shift = int(sample_rate * 0.010)
        self.n_fft = 1 << (self.size - 1).bit_length()
        self.max_length, self.mean, self.std, self.normalize = max_length, mean, std, normalize
        banks, _ = kaldi.get_mel_banks(n_mels, self.n_fft, float(sample_rate), 20.0, 0.0, 100.0,
                                       -500.0, 1.0)
        self.register_buffer("banks", F.pad(banks, (0, 1)).T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.size, periodic=False),
                             persistent=False)

    def compute(self, wave: Tensor) -> Tensor:
        x = wave.float().unfold(-1, self.size, self.shift)  # (B, frames, size), snip_edges
        x = x - x.mean(-1, keepdim=True)
        x = x - 0.97 * torch.cat([x[..., :1], x[..., :-1]], -1)  # pre-emphasis
        power = torch.fft.rfft(x * self.window, n=self.n_fft).abs().pow(2)
        fbank = (power @ self.banks).clamp_min(torch.finfo(torch.float32).eps).log()
        frames = fbank.shape[1]
        fbank = F.pad(fbank, (0, 0, 0, max(0, self.max_length - frames)))[:, : self.max_length]
        return (fbank - self.mean) / (self.std * 2) if self.normalize else fbank


def frontend_for(extractor) -> FrontEnd:
    """The torch front-end reproducing an HF feature extractor (Clap or AST)."""
    from transformers import ASTFeatureExtractor, ClapFeatureExtractor

    if isinstance(extractor, ClapFeatureExtractor):
        if extractor.truncation not in ("rand_trunc", "fusion"):
            raise BackboneError(
                f"preprocessor_config.json: truncation={extractor.truncation!r}; expected "
                "rand_trunc (unfused CLAP) or fusion (fused CLAP)")
        fused = extractor.truncation == "fusion"
        filters = extractor.mel_filters if fused else extractor.mel_filters_slaney
        return (ClapFusionMel if fused else ClapLogMel)(
            n_fft=extractor.fft_window_size, hop_length=extractor.hop_length,
            mel_filters=torch.from_numpy(filters), clip_samples=extractor.nb_max_samples,
            padding=extractor.padding)
    if isinstance(extractor, ASTFeatureExtractor):
        return ASTFbank(sample_rate=extractor.sampling_rate, n_mels=extractor.num_mel_bins,
                        max_length=extractor.max_length, mean=extractor.mean, std=extractor.std,
                        normalize=extractor.do_normalize)
    raise BackboneError(f"preprocessor_config.json: no torch front-end for "
                        f"{type(extractor).__name__}; expected a ClapFeatureExtractor or an "
                        "ASTFeatureExtractor")
