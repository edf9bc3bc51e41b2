"""Why are images generated from region embeddings unconvincing? (issue 28, item 1)

    python benchmarks/generation_diagnosis.py [--n 150] [--bank 3000] [--steps 20] [--split val]

The bundled generator is conditioned on four kinds of embedding, all by the bundled CLIP:
(a) the embedding of the very kind of image it was trained to reproduce (held-out single-object
views, ``regionlab.shapes.views.validation_views``); (b) the masked crop of one object of a
held-out multi-object scene (``--split``: test, or val for decisions; 2-4 objects); (c)
MaskInversion of that object;
(d) the global embedding of that multi-object scene. One image per embedding (same seed per
index for every condition) is classified zero-shot by the CLIP: class, colour and shape right
(for (d): the class of any object of the scene). Beside it, how far each kind of embedding lies
from what the generator was trained on: the cosine to the nearest of ``--bank`` training
embeddings (the shipped generator's training views: single-object scenes, seed 0, in order), the
cosine to the nearest of ``--mi-bank`` MaskInversion embeddings of training scenes (the kind
``train_generator --mi`` adds; those of the shipped stage's seed) and the raw norm. Writes
benchmarks/results/generation_diagnosis.json (test) or generation_diagnosis_val.json (``_mpl``
with ``--renderer mpl``: b-d on the matplotlib renderer's scenes, the shift set);
``REGIONLAB_SHAPES_GENERATOR`` picks other generator weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from regionlab.eval.shapes_regions import classify, other_renderer_scenes
from regionlab.models import get_spec, load, load_clip
from regionlab.region.baselines import region_embeddings
from regionlab.shapes.scenes import RenderOptions, generate_scenes
from regionlab.shapes.views import GENERATOR_MIN_SCALE, object_views, validation_views
from regionlab.shapes.vocab import CLASSES
from regionlab.training.decoder_data import maskinversion_views

ROOT = Path(__file__).resolve().parent


def raw_embeddings(clip, images) -> torch.Tensor:
    """CLIP image embeddings as the model gives them (not normalised: the norm is reported)."""
    out = [clip.encode_images(list(images[i:i + 256])) for i in range(0, len(images), 256)]
    return torch.cat(out).float()


def training_seed() -> int:
    """The seed of the generator's last training stage (its record beside the weights; 0
    without one): the seed its ``--mi`` embeddings were drawn with."""
    record = Path(get_spec("shapes-generator", "generator").extra["path"]).with_suffix(".json")
    return int(json.loads(record.read_text()).get("seed", 0)) if record.is_file() else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=150, help="embeddings per condition")
    p.add_argument("--bank", type=int, default=3000, help="training embeddings to compare with")
    p.add_argument("--mi-bank", type=int, default=1000,
                   help="training MaskInversion embeddings to compare with")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--split", choices=("val", "test"), default="test",
                   help="scenes of b-d (a: always the held-out single-object views); val "
                        "writes generation_diagnosis_val.json (decisions), test the reported one")
    p.add_argument("--renderer", choices=("pil", "mpl"), default="pil",
                   help="scenes of b-d: ours, or the matplotlib renderer that nothing is trained "
                        "or tuned on (the shift set; writes generation_diagnosis_mpl.json)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    clip = load_clip("shapes-clip", "cpu")
    gen = load("shapes-generator", "generator", "cpu")
    bank = F.normalize(raw_embeddings(clip, object_views(a.bank, 0, 0, seed=0,
                                                     min_scale=GENERATOR_MIN_SCALE).images), dim=-1)

    mi_seed = training_seed()
    mi_bank = maskinversion_views(clip, a.mi_bank, seed=mi_seed)[0]
    val = validation_views(a.n, 0)
    cond: dict[str, dict] = {"a: training-like image": {
        "emb": raw_embeddings(clip, val.images), "labels": [[CLASSES[i]] for i in val.labels]}}
    labels, scene_labels = [], []
    if a.renderer == "pil":
        scenes = generate_scenes(a.split, a.n, seed=7, options=RenderOptions(min_objects=2))
    else:
        scenes = other_renderer_scenes(a.n, a.split, seed=7, renderer=a.renderer)
    embs = {"masked-crop": [], "maskinversion": [], "global": []}
    for s in scenes:
        masks = np.stack([o.mask for o in s.objects])
        for m in embs:
            embs[m].append(region_embeddings(clip, s.image, masks, m).detach().float())
        labels += [[o.label] for o in s.objects]
        scene_labels += [[o.label for o in s.objects]] * len(s.objects)
    k = min(a.n, len(labels))
    cond["b: masked crop of one object"] = {"emb": torch.cat(embs["masked-crop"])[:k],
                                            "labels": labels[:k]}
    cond["c: MaskInversion of one object"] = {"emb": torch.cat(embs["maskinversion"])[:k],
                                              "labels": labels[:k]}
    glob = torch.cat(embs["global"])
    first = [0] + list(np.cumsum([len(s.objects) for s in scenes])[:-1])
    cond["d: global embedding of the scene"] = {
        "emb": glob[first][:k], "labels": [scene_labels[i] for i in first][:k]}

    out = {"conditions": {}}
    for name, c in cond.items():
        e = c["emb"]
        images = [np.asarray(gen.generate(row, n=1, seed=i, steps=a.steps)[0])
                  for i, row in enumerate(e)]
        pred = [CLASSES[i] for i in classify(clip, images)]
        wanted = c["labels"]
        near = (F.normalize(e, dim=-1) @ bank.T).max(-1).values
        near_mi = (F.normalize(e, dim=-1) @ mi_bank.T).max(-1).values
        out["conditions"][name] = {
            "n": len(pred),
            "class": float(np.mean([p in w for p, w in zip(pred, wanted)])),
            "colour": float(np.mean([p.split()[0] in {x.split()[0] for x in w}
                                     for p, w in zip(pred, wanted)])),
            "shape": float(np.mean([p.split()[1] in {x.split()[1] for x in w}
                                    for p, w in zip(pred, wanted)])),
            "cos_to_nearest_training_embedding": {
                "mean": float(near.mean()), "p10": float(near.quantile(0.1)),
                "p90": float(near.quantile(0.9))},
            "cos_to_nearest_training_maskinversion_embedding": {
                "mean": float(near_mi.mean()), "p10": float(near_mi.quantile(0.1)),
                "p90": float(near_mi.quantile(0.9))},
            "norm": float(e.norm(dim=-1).mean()),
        }
        print(name, json.dumps(out["conditions"][name]), flush=True)
    out.update({"bank": a.bank, "mi_bank": a.mi_bank, "mi_bank_seed": mi_seed,
                "steps": a.steps, "guidance": gen.defaults.get("guidance"),
                "split": a.split, "renderer": a.renderer,
                "generator": get_spec("shapes-generator", "generator").extra["path"],
                "command": f"python benchmarks/generation_diagnosis.py --n {a.n} --bank {a.bank} "
                           f"--mi-bank {a.mi_bank} --steps {a.steps} --split {a.split} "
                           f"--renderer {a.renderer}",
                "machine": {"platform": platform.platform(), "torch": torch.__version__,
                            "threads": a.threads},
                "wall_seconds": round(time.time() - t0, 1)})
    name = "generation_diagnosis" + ("" if a.renderer == "pil" else f"_{a.renderer}")
    path = ROOT / "results" / f"{name}{'' if a.split == 'test' else '_val'}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print("| conditioning embedding | n | class | colour | shape | cos to nearest training "
          "view embedding (mean, p10) | cos to nearest training MaskInversion embedding "
          "(mean, p10) | norm |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in out["conditions"].items():
        c = r["cos_to_nearest_training_embedding"]
        m = r["cos_to_nearest_training_maskinversion_embedding"]
        print(f"| {name} | {r['n']} | {100 * r['class']:.1f}% | {100 * r['colour']:.1f}% | "
              f"{100 * r['shape']:.1f}% | {c['mean']:.3f}, {c['p10']:.3f} | "
              f"{m['mean']:.3f}, {m['p10']:.3f} | {r['norm']:.2f} |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
