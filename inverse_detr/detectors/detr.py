"""Load any HF DETR frozen, and read every stage's embedding from one forward pass.

HF's DETR returns the encoder and decoder hidden states but not the backbone's padding mask
or the spatial sine position embedding; forward hooks on `model.model.backbone` and
`model.model.position_embedding` capture those during the same pass.
"""

from __future__ import annotations

import copy
import json
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.ops import box_convert
from transformers import DetrConfig, DetrForObjectDetection
from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss
from transformers.models.detr.modeling_detr import DetrFrozenBatchNorm2d

from inverse_detr.config import REPO_ROOT
from inverse_detr.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from inverse_detr.errors import UserError
from inverse_detr.inverse.embeddings import ForwardEmbeddings

WEIGHTS_FILE = "model.safetensors"  # what save_pretrained writes (one shard: small models)


class DetrLoadError(UserError, RuntimeError):
    """A DETR name or directory that cannot be loaded; the message is one line."""


def local_dir(name: str | os.PathLike) -> Path | None:
    """The local directory `name` means: as given, else relative to the repository root
    (so `checkpoints/shapes-detr` works from any working directory); None for hub ids."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    if not path.is_absolute() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return None


def looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else can only be meant as a directory."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/")


def load_detr(
    name_or_path: str | os.PathLike,
    *,
    local_files_only: bool | None = None,
    frozen: bool = True,
) -> DetrForObjectDetection:
    """Load a `DetrForObjectDetection` from a hub id or a `save_pretrained` directory.

    A relative directory is looked up in the working directory, then in the repository root.
    With `frozen=True` (default) the model is in `eval()` mode and no parameter requires grad.
    `local_files_only=None` lets HF decide (its `HF_HUB_OFFLINE` setting).
    Raises `DetrLoadError` with a one-line message when the model cannot be loaded.
    """
    name = str(name_or_path)
    path = local_dir(name)
    if path is not None:
        if not (path / "config.json").is_file():
            raise DetrLoadError(f"{path}: not a DETR directory (no config.json in it)")
        name = str(path)
    elif looks_like_path(name):
        raise DetrLoadError(f"DETR directory not found: {Path(name).expanduser()}")
    try:
        model = DetrForObjectDetection.from_pretrained(name, local_files_only=local_files_only)
    except OSError as err:
        raise DetrLoadError(
            f"cannot load DETR {name!r} offline ({str(err).splitlines()[0]}); give a local "
            "directory written by save_pretrained instead, e.g. model.name=checkpoints/shapes-detr"
        ) from None
    except (ValueError, KeyError) as err:
        raise DetrLoadError(f"{name}: not a loadable DETR ({err})") from None
    return freeze(model) if frozen else model


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Put `model` in eval mode and stop every parameter from requiring grad.

    HF's timm-backbone path freezes only part of the backbone, so this is explicit.
    """
    model.eval()
    model.requires_grad_(False)
    return model


def image_normalization(name_or_path: str | os.PathLike) -> tuple[tuple[float, ...], ...]:
    """(mean, std) of the DETR's image processor, ImageNet's when it records none.

    Reads `preprocessor_config.json` of a local directory; hub ids use ImageNet statistics,
    which every released DETR uses.
    """
    directory = local_dir(name_or_path)
    config_file = directory / "preprocessor_config.json" if directory else None
    if config_file is not None and config_file.is_file():
        settings = json.loads(config_file.read_text())
        mean, std = settings.get("image_mean"), settings.get("image_std")
        if mean and std:
            return tuple(mean), tuple(std)
    return IMAGENET_MEAN, IMAGENET_STD


@contextmanager
def _capture(module: torch.nn.Module, store: dict, key: str):
    handle = module.register_forward_hook(lambda _m, _args, output: store.__setitem__(key, output))
    try:
        yield
    finally:
        handle.remove()


def forward_embeddings(
    model: DetrForObjectDetection,
    pixel_values: torch.Tensor,
    pixel_mask: torch.Tensor | None = None,
) -> ForwardEmbeddings:
    """Every stage's embedding from ONE forward pass of `model`.

    pixel_values: (B, 3, H, W) normalised images
    pixel_mask:   (B, H, W) 1 on real pixels, 0 on padding (None: all real)
    Gradients flow when the caller allows them (joint mode); wrap in `torch.no_grad()` to
    compute frozen targets.
    """
    captured: dict = {}
    detr = model.model
    with (
        _capture(detr.backbone, captured, "backbone"),
        _capture(detr.position_embedding, captured, "spatial_pos"),
    ):
        out = model(
            pixel_values=pixel_values,
            pixel_mask=pixel_mask,
            output_hidden_states=True,
        )
    feature_map, mask = captured["backbone"][-1]
    spatial_pos = captured["spatial_pos"]  # (B, d, H', W')
    # HF records inner decoder layers before the decoder's final LayerNorm, the last one after
    # it; normalise the inner ones too (what DETR's auxiliary heads see), so layers compare
    norm = detr.decoder.layernorm
    decoder_layers = (
        out.decoder_hidden_states[0],
        *(norm(h) for h in out.decoder_hidden_states[1:-1]),
        out.decoder_hidden_states[-1],
    )
    return ForwardEmbeddings(
        backbone=out.encoder_hidden_states[0],
        grid=(feature_map.shape[-2], feature_map.shape[-1]),
        spatial_pos=spatial_pos.flatten(2).transpose(1, 2),  # (B, d, H', W') -> (B, HW, d)
        mask=mask.flatten(1),  # (B, H', W') -> (B, HW)
        encoder_layers=tuple(out.encoder_hidden_states),
        decoder_layers=decoder_layers,
        logits=out.logits,
        boxes=out.pred_boxes,
        query_pos=detr.query_position_embeddings.weight,
        image_size=(pixel_values.shape[-2], pixel_values.shape[-1]),
    )


def token_positions(
    model: DetrForObjectDetection, pixel_mask: torch.Tensor, grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """What `forward_embeddings` gives as `mask` (B, HW) and `spatial_pos` (B, HW, d), from the
    (B, H, W) pixel mask alone: the token mask and sine position embedding of the (H', W')
    grid, computed as HF's DETR does (no backbone pass)."""
    mask = nn.functional.interpolate(pixel_mask[None].float(), size=grid).to(torch.bool)[0]
    shape = (pixel_mask.shape[0], model.config.d_model, *grid)
    pos = model.model.position_embedding(
        shape=shape, device=pixel_mask.device, dtype=torch.float32, mask=mask
    )
    return mask.flatten(1), pos.flatten(2).transpose(1, 2)


def num_labels_with_no_object(model: DetrForObjectDetection) -> int:
    """C + 1: the width of DETR's class logits."""
    return model.config.num_labels + 1


def backbone_stride(model: DetrForObjectDetection) -> int:
    """Pixels per token side of the backbone feature map fed to the encoder (16 or 32)."""
    return int(model.model.backbone.model.feature_info.reduction()[-1])


def detr_signature(model: DetrForObjectDetection) -> dict[str, int]:
    """The DETR dimensions an inverse chain depends on."""
    return {
        "d_model": model.config.d_model,
        "num_queries": model.config.num_queries,
        "num_labels_plus_one": num_labels_with_no_object(model),
        "stride": backbone_stride(model),
    }


def random_detr(
    backbone: str = "resnet10t",
    dilation: bool = True,
    backbone_stages: int = 0,
    d_model: int = 128,
    encoder_layers: int = 2,
    decoder_layers: int = 2,
    attention_heads: int = 8,
    ffn_dim: int = 512,
    num_queries: int = 12,
    num_labels: int = 7,
    id2label: dict[int, str] | None = None,
) -> DetrForObjectDetection:
    """A DETR with random weights and a timm backbone, built offline (nothing downloaded).

    `backbone_stages` > 0 keeps only the backbone's first stages (timm `out_indices` 1..N; the
    encoder reads the last). Seed torch before calling for reproducible weights. Returned
    trainable, in train mode.
    """
    if backbone_stages < 0 or (backbone_stages and dilation):
        raise ValueError(
            f"backbone_stages={backbone_stages}: give 0 (all stages) or, without dilation, N ≥ 1"
        )
    backbone_kwargs = {"use_timm_backbone": True, "backbone": backbone, "dilation": dilation}
    if backbone_stages:  # HF builds the timm backbone from this config, fully offline
        backbone_kwargs = {
            "backbone_config": {
                "model_type": "timm_backbone",
                "backbone": backbone,
                "num_channels": 3,
                "features_only": True,
                "use_pretrained_backbone": False,
                "out_indices": list(range(1, backbone_stages + 1)),
            }
        }
    config = DetrConfig(
        use_pretrained_backbone=False,
        **backbone_kwargs,
        d_model=d_model,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=attention_heads,
        decoder_attention_heads=attention_heads,
        encoder_ffn_dim=ffn_dim,
        decoder_ffn_dim=ffn_dim,
        num_queries=num_queries,
        num_labels=num_labels,
        id2label=id2label or {i: f"class_{i}" for i in range(num_labels)},
    )
    return DetrForObjectDetection(config)


def trainable_from_scratch(model: DetrForObjectDetection) -> DetrForObjectDetection:
    """Make a random DETR trainable from scratch (found by experiment here; see "The shapes
    world" in docs/architecture.md).

    HF swaps in frozen BatchNorm and freezes the stem and layer1, while timm zero-initialises
    each residual block's last BN scale: those branches would stay dead, so use ordinary
    trainable BatchNorm. HF draws the query embeddings from N(0, 0.02), so all queries start
    alike and collapse onto one box: use DETR's own N(0, 1) and Xavier for the transformer.
    """
    _unfreeze_batch_norm(model.model.backbone)
    model.requires_grad_(True)
    # HF's DETR trained with auxiliary losses also normalises the decoder stream between
    # layers; with no pretrained function to preserve, keep that variant (the shipped shapes
    # detector has it). `detection_loss` computes the auxiliary losses either way.
    model.config.auxiliary_loss = True
    detr = model.model
    with torch.no_grad():
        nn.init.normal_(detr.query_position_embeddings.weight, 0.0, 1.0)
        for module in (*detr.encoder.modules(), *detr.decoder.modules()):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
    return model.train()


def _unfreeze_batch_norm(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, DetrFrozenBatchNorm2d):
            bn = nn.BatchNorm2d(child.weight.numel())
            with torch.no_grad():
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(bn, key).copy_(getattr(child, key))
            module._modules[name] = bn
        else:
            _unfreeze_batch_norm(child)


def autocast_backbone(model: DetrForObjectDetection, dtype: torch.dtype = torch.bfloat16) -> None:
    """Run the CNN backbone in `dtype` autocast with channels_last memory (fp32 outputs).

    The convolutions dominate DETR's cost on CPUs and GPUs alike; the transformer stays fp32.
    Patches the instance's forward, so parameter names and checkpoints are unchanged.
    """
    backbone = model.model.backbone.model
    backbone.to(memory_format=torch.channels_last)
    original = backbone.forward

    def forward(pixel_values: torch.Tensor):
        with torch.autocast(device_type=pixel_values.device.type, dtype=dtype):
            features = original(pixel_values.contiguous(memory_format=torch.channels_last))
        return [f.float().contiguous() for f in features]

    backbone.forward = forward


class Fp16OverflowError(UserError, ValueError):
    """A weight that fp16 cannot hold (beyond ±65504); the message names it."""


def half_precision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors as contiguous fp16 (others as they are); a value fp16 cannot
    hold is an `Fp16OverflowError` naming the tensor, never a silent inf."""
    out = {}
    for key, value in state.items():
        if value.is_floating_point():
            half = value.detach().half()
            if not torch.equal(half.isfinite(), value.isfinite()):
                raise Fp16OverflowError(
                    f"{key}: values up to {value.abs().max():.3g} overflow fp16; store it fp32"
                )
            value = half
        out[key] = value.contiguous()
    return out


def save_detr(
    model: DetrForObjectDetection,
    path: str | os.PathLike,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    fp16_storage: bool = False,
) -> Path:
    """`save_pretrained` plus the image statistics `image_normalization` reads back.

    fp16_storage: floating-point weights stored as fp16 (half the size); `config.json` keeps
    float32, so `from_pretrained` and `load_detr` load them back as float32."""
    path = Path(path)
    model.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors
    # HF's frozen BatchNorm has no batch counter; leaving it out keeps loading quiet
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    model.save_pretrained(path, state_dict=state)
    if fp16_storage:
        save_file(half_precision(state), str(path / WEIGHTS_FILE))
    settings = {
        "image_processor_type": "DetrImageProcessor",
        "image_mean": list(mean),
        "image_std": list(std),
        "do_normalize": True,
    }
    (path / "preprocessor_config.json").write_text(json.dumps(settings, indent=2))
    return path


def detection_loss(
    model: DetrForObjectDetection, emb: ForwardEmbeddings, labels: list[dict[str, torch.Tensor]]
) -> torch.Tensor:
    """DETR's Hungarian set loss (1·CE + 5·L1 + 2·GIoU, no-object weight 0.1) on the last
    decoder layer plus the auxiliary losses of every inner layer, as the original DETR.

    Computed here rather than by `config.auxiliary_loss=True`, which in transformers 5.x also
    normalises the decoder's stream between layers and so changes what a pretrained DETR
    computes. labels: per image {"class_labels": (N,), "boxes": (N, 4) normalised cxcywh}.
    """
    inner = torch.stack(emb.decoder_layers[1:])  # (L, B, Q, d), normalised like the last
    config = copy.copy(model.config)
    config.auxiliary_loss = True
    loss, _, _ = ForObjectDetectionLoss(
        emb.logits,
        labels,
        emb.logits.device,
        emb.boxes,
        config,
        model.class_labels_classifier(inner),
        model.bbox_predictor(inner).sigmoid(),
    )
    return loss


def to_pixels(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, 4) normalised cxcywh → (N, 4) xyxy pixels on an (H, W) canvas."""
    h, w = image_size
    scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    return box_convert(boxes, "cxcywh", "xyxy") * scale


def detr_predictions(
    logits: torch.Tensor, boxes: torch.Tensor, sizes: list[tuple[int, int]]
) -> list[dict[str, torch.Tensor]]:
    """DETR's own post-processing: per query, the best real class and its probability.

    logits: (B, Q, C + 1) with "no object" last;  boxes: (B, Q, 4) normalised cxcywh of each
    image;  sizes: each image's (h, w) in pixels (`Target.size`).
    Every query is kept (AP ranks by score), as in DETR's COCO evaluation.
    """
    probs = logits.float().softmax(-1)[..., :-1]  # (B, Q, C): drop "no object"
    scores, labels = probs.max(-1)
    return [
        {"boxes": to_pixels(b.float(), size), "scores": s, "labels": lab}
        for b, s, lab, size in zip(boxes, scores, labels, sizes, strict=True)
    ]
