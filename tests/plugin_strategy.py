"""Third-party strategies as a user would write them, loaded with --plugin in tests."""

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

    def before_training_exp(self, strategy, **kwargs) -> None:
        if strategy.experience.current_experience == 2:
            raise RuntimeError("simulated crash in step 3")
