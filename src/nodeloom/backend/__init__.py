"""The code that runs models: loading them (`model_manager`: the `ModelLoaderRegistry`, its loaders, the model cache),
the pieces of Stable Diffusion (`stable_diffusion`), and util.

`model_manager` and `util` import no torch, diffusers or transformers at module level: the server imports them when it
builds its services, and a server that only ever runs core nodes must not pay seconds and hundreds of MB for them.
Their heavy imports live inside the functions that load, measure or move models. The modules of `stable_diffusion`
but `schedulers` and `lora_keys` import torch at module level (`denoise`, `prompts` and `vae` diffusers too,
`textual_inversion` transformers); nodes import them inside `invoke`.
"""
