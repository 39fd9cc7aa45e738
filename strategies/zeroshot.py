"""Zero-shot: the pretrained backbone, never trained on the stream (reference row)."""

from tail_bench.training.strategy import Strategy


class ZeroShot(Strategy):
    name = "zeroshot"
    description = "Zero-shot reference: the backbone before any step, no training"
    trains = False

    def setup(self, model) -> None:
        for p in model.parameters():
            p.requires_grad_(False)
