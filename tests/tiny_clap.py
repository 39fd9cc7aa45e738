"""The tiny random CLAP the Hugging Face tests share (HTS-AT + RoBERTa layout, 16-d)."""

from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig


def tiny_clap(fusion: bool = False) -> ClapModel:
    audio = ClapAudioConfig(window_size=4, num_mel_bins=64, spec_size=128, patch_size=4,
                            patch_stride=[4, 4], patch_embeds_hidden_size=16, depths=[1, 2],
                            num_attention_heads=[2, 4], hidden_size=32, projection_dim=16,
                            enable_fusion=fusion)
    text = ClapTextConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=64, projection_dim=16,
                          max_position_embeddings=80)
    return ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(),
                                projection_dim=16)).eval()
