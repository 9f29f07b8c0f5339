"""``toolchain-restore pix2pixhd``: train, test, encode-features and sample."""

from __future__ import annotations

import argparse

from ...config import add_precision_argument, add_settings_arguments, given_settings, settings_from_args

__all__ = ["add_pix2pixhd_parser"]


def _pix2pixhd_settings(args: argparse.Namespace):
    from . import Pix2PixHDSettings, preset

    given = given_settings(Pix2PixHDSettings, args)
    return preset(args.preset, **given)


def _pix2pixhd_train(args: argparse.Namespace) -> int:
    from . import train_pix2pixhd
    from ...training import TrainerSettings

    settings = _pix2pixhd_settings(args)
    trainer = settings_from_args(TrainerSettings, args, hold=args.iterations // 2 if args.hold is None else args.hold)
    metrics = train_pix2pixhd(settings, trainer, args.global_iterations, args.output)
    print("held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {args.output or f'{trainer.out_dir}/pix2pixhd.safetensors'} (TensorBoard logs beside it)")
    return 0


def _pix2pixhd_model(args: argparse.Namespace):
    from . import load_pix2pixhd
    from .clusters import FeatureClusters
    from .sampling import load_shipped

    if args.weights is None:
        return load_shipped(args.device if args.device != "auto" else "cpu")
    model = load_pix2pixhd(args.weights)
    clusters = FeatureClusters.load(args.clusters) if getattr(args, "clusters", None) else None
    return model, clusters


def _pix2pixhd_encode_features(args: argparse.Namespace) -> int:
    from ..datasets import synthesis_set
    from . import load_pix2pixhd
    from .clusters import cluster_features, encode_instances

    model = load_pix2pixhd(args.weights)
    s = model.settings
    samples = synthesis_set(args.data or s.data, "train", s.label_count, args.scenes or s.train_scenes, s.height,
                            s.width, model.size_multiple if s.pad else 1)
    features = encode_instances(model, samples)
    clusters = cluster_features(features, args.clusters, args.seed)
    clusters.save(args.output)
    print(", ".join(f"class {k}: {len(features[k])} instances -> {len(v)} clusters" for k, v in clusters.centres.items()))
    print(f"wrote {args.output}")
    return 0


def _parse_choice(text: str | None) -> dict[int, int]:
    if not text:
        return {}
    try:
        return {int(k): int(v) for k, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        raise SystemExit(f"--choose takes INSTANCE=CLUSTER pairs separated by commas, e.g. 5001=2,6000=0; got {text!r}")


def _pix2pixhd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from ..layout import read_integer_map
    from .sampling import synthesize, write_sheet
    from ..scenes import procedural_split

    model, clusters = _pix2pixhd_model(args)
    s = model.settings
    real = None
    if args.layout:
        label = read_integer_map(args.layout)
        instance = read_integer_map(args.instance) if args.instance else label
    else:
        scene = procedural_split("test", args.scene + 1, s.height, s.width)[args.scene]
        label, instance, real = scene.label.astype(np.int64), scene.instance.astype(np.int64), scene.image
    outputs = synthesize(model, label, instance, clusters, args.outputs, args.seed, _parse_choice(args.choose))
    write_sheet(args.output, label, outputs, real)
    ids = [int(i) for i in np.unique(instance) if i >= 1000]
    print(f"wrote {args.output}: layout, {len(outputs)} output(s){', real image' if real is not None else ''}; "
          f"instances you can --choose: {ids[:12]}{' ...' if len(ids) > 12 else ''}")
    return 0


def _pix2pixhd_test(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..datasets import synthesis_set
    from .sampling import evaluate_synthesis, synthesize

    model, clusters = _pix2pixhd_model(args)
    s = model.settings
    samples = synthesis_set(args.data or s.data, "test", s.label_count, args.scenes, s.height, s.width,
                            model.size_multiple if s.pad else 1)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    images = []
    for k in range(len(samples)):
        sample = samples[k]
        image = synthesize(model, sample.label, sample.instance, clusters, 1, args.seed + k)[0]
        Image.fromarray(image).save(out / f"{sample.name}.png")
        images.append(image)
    have_real = all(samples[k].image is not None for k in range(len(samples)))
    if have_real:
        from ..segmentation import load_segmenter
        from ...serialization import shipped_weights

        segmenter = None
        if args.segmenter:
            segmenter = load_segmenter(args.segmenter)
        elif (args.data or s.data) == "procedural":
            segmenter = load_segmenter(shipped_weights("segmenter.safetensors"))
        metrics = evaluate_synthesis(images, [samples[k] for k in range(len(samples))], segmenter)
        print(", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"wrote {len(images)} images to {out}")
    return 0


def _pix2pixhd_export(args: argparse.Namespace) -> int:
    from . import load_pix2pixhd, save_pix2pixhd

    model = load_pix2pixhd(args.weights)
    save_pix2pixhd(model, args.output, discriminator=False, half=True, exported_from=str(args.weights))
    print(f"wrote {args.output}: generator{' and encoder' if model.encoder is not None else ''} in float16")
    return 0


def add_pix2pixhd_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``pix2pixhd`` subcommand and its verbs to the main command's subparsers."""
    from ...training import TrainerSettings
    from .model import Pix2PixHDSettings

    p = sub.add_parser("pix2pixhd", help="pix2pixHD: image synthesis from semantic layouts (train / test / encode-features / sample)")
    verbs = p.add_subparsers(dest="verb", required=True)
    v = verbs.add_parser("train", help="the staged schedule: global generator, then the enhancer(s)")
    v.add_argument("--preset", choices=["cpu", "paper", "pix2pix"], default="cpu",
                   help="cpu: narrow networks for 128x256 procedural scenes; paper: the reference's for 1024x2048 on a "
                        "GPU; pix2pix: the single-scale U-Net baseline at the cpu budget")
    v.add_argument("--global-iterations", type=int, default=None, help="steps of the global stage (default: --iterations)")
    v.add_argument("--output", default=None, help="where to write the model (default: OUT_DIR/pix2pixhd.safetensors)")
    add_settings_arguments(v, Pix2PixHDSettings, only_given=True)
    add_settings_arguments(v, TrainerSettings)
    v.set_defaults(func=_pix2pixhd_train, out_dir="runs/pix2pixhd", lr=2e-4, beta1=0.5, schedule="linear", hold=None)
    v = verbs.add_parser("export", help="a small file that only samples: no discriminators, float16")
    v.add_argument("--weights", required=True, help="a trained model file")
    v.add_argument("--output", required=True, help="where to write the small file")
    v.set_defaults(func=_pix2pixhd_export)
    for name, func, text in (("test", _pix2pixhd_test, "synthesise the held-out layouts, write them, report L1 / PSNR "
                              "and segmentation agreement (procedural scenes: with the shipped segmenter)"),
                             ("sample", _pix2pixhd_sample, "several outputs for one layout (default: a procedural "
                              "test scene with the shipped model), as one picture"),
                             ("encode-features", _pix2pixhd_encode_features, "encode every training instance and "
                              "cluster the features per class (K-means), for sample / test")):
        v = verbs.add_parser(name, help=text)
        v.add_argument("--weights", default=None, required=name == "encode-features",
                       help="model file" + ("" if name == "encode-features" else " (default: the shipped one)"))
        v.add_argument("--seed", type=int, default=0, help="seed of the cluster choices")
        v.add_argument("--data", default=None, help="'procedural' or a folder in the official layout (default: the model's)")
        v.add_argument("--device", default="auto", help="auto, cpu or cuda")
        v.set_defaults(func=func)
        add_precision_argument(v, autocast_run=True)
        if name == "encode-features":
            v.add_argument("--clusters", type=int, default=10, help="K-means clusters per class (reference: 10)")
            v.add_argument("--scenes", type=int, default=None, help="procedural training scenes (default: the model's)")
            v.add_argument("--output", default="runs/pix2pixhd/clusters.safetensors", help="where to write the clusters")
        else:
            v.add_argument("--clusters", default=None, help="feature clusters of --weights (from encode-features)")
        if name == "test":
            v.add_argument("--scenes", type=int, default=16, help="procedural held-out scenes")
            v.add_argument("--segmenter", default=None, help="segmentation network for the agreement scores "
                                                             "(default for procedural scenes: the shipped one)")
            v.add_argument("--output", default="runs/pix2pixhd/test", help="folder for the synthesised images")
        if name == "sample":
            v.add_argument("--layout", default=None, help="label map PNG (integer labels); default: a procedural test scene")
            v.add_argument("--instance", default=None, help="instance map PNG for --layout")
            v.add_argument("--scene", type=int, default=0, help="which procedural test scene, without --layout")
            v.add_argument("--outputs", type=int, default=3, help="outputs, each with its own instance appearances")
            v.add_argument("--choose", default=None, help="pin instances to clusters: INSTANCE=CLUSTER,...")
            v.add_argument("--output", default="pix2pixhd_sample.png", help="the picture to write")
