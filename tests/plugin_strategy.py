"""Third-party strategies as a user would write them, loaded with --strategy-class in tests."""

from tail_bench.training.strategy import Strategy


class HeadsOnly(Strategy):
    name = "heads-only"
    description = "test plugin: trains the projection heads only"

    def setup(self, model) -> None:
        model.requires_grad_(False)
        model.audio_head.requires_grad_(True)
        model.text_head.requires_grad_(True)


class CrashAtStep3(Strategy):
    name = "crash-at-3"
    description = "test plugin: fails during the third step"

    def before_training_exp(self, template, **kwargs) -> None:
        if template.experience.current_experience == 2:
            raise RuntimeError("simulated crash in step 3")


class InterruptAtStep3(Strategy):
    name = "interrupt-at-3"
    description = "test plugin: Ctrl-C during the third step"

    def before_training_exp(self, template, **kwargs) -> None:
        if template.experience.current_experience == 2:
            raise KeyboardInterrupt


class PromptsAtSetup(Strategy):
    """Changes the model in `setup` (as prompt methods do): row 0 must not see it."""

    name = "prompts-at-setup"
    description = "test plugin: perturbs the heads in setup"

    def setup(self, model) -> None:
        import torch

        super().setup(model)
        with torch.no_grad():
            for p in model.audio_head.parameters():
                p.add_(torch.randn_like(p))


class BadOptions(Strategy):
    name = "bad-options"
    description = "test plugin: Options is not a dataclass"
    Options = dict
