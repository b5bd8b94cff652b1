"""The pieces of Stable Diffusion that nodes put together: schedulers, prompts, noise, the denoising loop, the VAE,
previews, seamless tiling, LoRA patches and textual-inversion embeddings.

These modules import torch at module level (`denoise`, `prompts` and `vae` diffusers too), except `schedulers`, whose
names the nodes' fields use, and `lora_keys`, whose LoRA tensor names the probe reads: node modules import the
others inside `invoke`, so a graph of core nodes never loads torch.
"""
