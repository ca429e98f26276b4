"""Every kind of chain: accuracy and learned transitions per chain kind, seed and variant, with a peer.

    python bench/bench.py --only chains                          # all kinds, seeds 0-4, all variants
    python bench/bench.py --only chains --kinds self-transitions,independent --seeds 0 \
        --chain-variants gmm,both,hmmlearn
    python bench/bench.py --only chains --fixed-latents          # GMM+MM only, on saved latents (seconds per run)

Orders (:mod:`orchestrator.chain_kinds`, drawn with the seed) reorder the tutorial's images; ``tutorial``
is the data's own order.  Variants (the ablation):

* ``gmm``: VAE + GMM alone (``--no-mm``; the mixture's marginal-likelihood moves);
* ``moves``: an MM above, but the GMM ignores its message: only the GMM's own sequence machinery
  (its sequence-guided moves and the prior of the chain it fits for them);
* ``message``: the MM's message, the GMM's sequence-guided moves off (``sequence_moves=0``);
* ``both``: the default model;
* ``hmmlearn``: the peer, hmmlearn's ``GaussianHMM`` (10 states, full covariances, best of 5 EM
  restarts by likelihood, posterior argmax) fitted on the latents of the ``gmm`` run (with ``--gmm-per-order``:
  of the ``gmm`` run on that order, as a user would run the two steps on their data).

The ``gmm`` variant never uses the order (the VAE and the mixture are exchangeable in the points), so by
default it runs once per seed on the data's own order and every kind reads its latents and classes through
the order's indices.  That is the same model but not the same bits: the VAE's mini-batches follow the data's
order, so a run on another order is another trajectory.  ``--gmm-per-order`` runs it on every order itself
(the like-for-like comparison; on independent draws the ``both`` run then equals it byte for byte).
With ``--fixed-latents`` no VAE is trained in the loop: the ``gmm`` run's first-round latents (plain VAE, no
GMM prior yet) are reordered and every variant runs its GMM and MM updates for the rounds on them, in this process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = ("gmm", "moves", "message", "both", "hmmlearn")


def _modules(data: np.ndarray, labels: np.ndarray, lengths: np.ndarray | None, variant: str, epochs: int) -> list[Any]:
    from actors import GMM, VAE, MarkovModel, Observation

    obs = Observation(data) if lengths is None else Observation(data, lengths=lengths.tolist())
    vae = VAE(18, itr=epochs, batch_size=500)
    gmm = GMM(10, category=labels, **_gmm_options(variant))
    vae.connect(obs)
    gmm.connect(vae)
    modules = [obs, vae, gmm]
    if variant != "gmm":
        mm = MarkovModel()
        mm.connect(gmm)
        modules.append(mm)
    return modules


def _gmm_options(variant: str) -> dict[str, Any]:
    if variant == "message":
        return {"sequence_moves": 0}
    if variant == "moves":
        return {"use_class_prior": False}
    return {}


def hmm_peer(
    z: np.ndarray, lengths: np.ndarray | None, seed: int, n_states: int = 10, restarts: int = 5
) -> tuple[np.ndarray, np.ndarray, float]:
    """hmmlearn's GaussianHMM on latents (N, d): best of ``restarts`` EM fits by log-likelihood.

    Returns
    -------
    classes : numpy.ndarray, shape (N,)
        Posterior argmax of every point.
    transitions : numpy.ndarray, shape (K, K)
    seconds : float
        Wall time of all the fits.
    """
    from hmmlearn.hmm import GaussianHMM

    t0 = time.perf_counter()
    lens = None if lengths is None else lengths.tolist()
    best = None
    for r in range(restarts):
        model = GaussianHMM(n_components=n_states, covariance_type="full", n_iter=100, random_state=seed * 1000 + r)
        model.fit(z, lens)
        score = model.score(z, lens)
        if best is None or score > best[0]:
            best = (score, model)
    assert best is not None
    classes = best[1].predict_proba(z, lens).argmax(axis=1)
    return classes, best[1].transmat_, time.perf_counter() - t0


def _score(
    kind: str,
    seed: int,
    variant: str,
    classes: np.ndarray,
    learned: np.ndarray | None,
    seq: Any,
    seconds: float,
    **extra: Any,
) -> dict[str, Any]:
    from actors.scoring import accuracy, transition_distance

    states = seq.states
    row = {
        "part": "chains",
        "kind": kind,
        "seed": seed,
        "variant": variant,
        "accuracy": round(accuracy(classes, states), 4),
        "tv": None if learned is None else round(transition_distance(learned, classes, states, seq.transitions), 4),
        "seconds": round(seconds, 1),
        **extra,
    }
    print(json.dumps(row), flush=True)
    return row


def _order(kind: str, images: np.ndarray, labels: np.ndarray, seed: int) -> Any:
    from orchestrator.chain_kinds import kind_sequence
    from orchestrator.sequences import ChainSequence, empirical_transitions

    if kind == "tutorial":
        classes, states = np.unique(labels, return_inverse=True)
        return ChainSequence(
            images, labels, np.arange(len(labels)), classes, empirical_transitions(states, len(classes)), 0
        )
    return kind_sequence(kind, images, labels, np.random.default_rng(seed))


def _full_run(
    seq: Any, variant: str, seed: int, args: argparse.Namespace, out: Path
) -> tuple[np.ndarray, np.ndarray | None, float, dict[str, Any]]:
    from orchestrator import Orchestrator

    t0 = time.perf_counter()
    # torch threads of the VAE: the run's own `threads` (a resource's num_cpus sets no threads on the local backend)
    res = Orchestrator(
        _modules(seq.data, seq.labels, seq.lengths, variant, args.epochs),
        out,
        seed=seed,
        backend="local",
        threads=args.threads,
    ).run(args.rounds)
    seconds = time.perf_counter() - t0
    classes = np.loadtxt(out / "module002_gmm" / "class_learn.txt", dtype=int)
    learned = None if variant == "gmm" else np.loadtxt(out / "module003_mm" / "trans_prob_learn.txt")
    last = res.seconds[-1]
    share = sum(v for k, v in last.items() if not k.endswith("_vae")) / max(sum(last.values()), 1e-9)
    return classes, learned, seconds, {"gmm_mm_share_last_round": round(share, 3)}


def _fixed_run(
    z: np.ndarray, seq: Any, variant: str, seed: int, rounds: int
) -> tuple[np.ndarray, np.ndarray | None, float, dict[str, Any]]:
    """GMM and MM workers for ``rounds`` rounds on fixed latents (N, d), in this process."""
    from actors.config import GMMConfig, MMConfig
    from actors.gmm import GMMWorker
    from actors.mm import MMWorker
    from messages import Latents

    gmm_seed, mm_seed = np.random.SeedSequence(seed).spawn(2)
    gmm = GMMWorker(GMMConfig(**_gmm_options(variant)), "gmm", "mm", "vae", gmm_seed, sequence=variant != "gmm")
    mm = MMWorker(MMConfig(), "mm", "gmm", mm_seed)
    prior, trans = None, None
    t0 = time.perf_counter()
    for r in range(rounds):
        post, _, _ = gmm.update(r, Latents(sender="vae", receiver="gmm", round=r, z=z, lengths=seq.lengths), prior)
        if variant != "gmm":
            prior, report = mm.update(r, post)
            trans = report["transitions"]
    return np.argmax(post.probs, axis=1), trans, time.perf_counter() - t0, {}


def part_chains(args: argparse.Namespace, rows: list[dict[str, Any]], load_mnist: Any) -> None:
    """One row per (chain kind, seed, variant); see the module docstring."""
    from orchestrator.checkpoint import read_message

    images, labels = load_mnist()
    work = Path(args.workdir)
    for seed in args.seeds:
        base = work / f"chains_gmm_s{seed}"
        if not (base / "module002_gmm" / "class_learn.txt").exists() or args.rerun:
            _full_run(_order("tutorial", images, labels, seed), "gmm", seed, args, base)
        base_classes = np.loadtxt(base / "module002_gmm" / "class_learn.txt", dtype=int)
        z_last = np.loadtxt(base / "module001_vae" / "z_learn.txt")
        z_first = read_message(base / "module001_vae" / "000" / "latents.arrow").z
        for kind in args.kinds:
            seq = _order(kind, images, labels, seed)
            z_peer = z_last[seq.indices]
            for variant in args.chain_variants:
                out = work / f"chains_{kind}_{variant}_s{seed}"
                if variant == "hmmlearn":
                    own = work / f"chains_{kind}_gmm_s{seed}" / "module001_vae" / "z_learn.txt"
                    if args.fixed_latents:
                        z_peer = z_first[seq.indices]
                    elif args.gmm_per_order and own.exists():
                        z_peer = np.loadtxt(own)  # the two-step pipeline on this very order: its --no-mm run's latents
                    classes, learned, seconds = hmm_peer(z_peer, seq.lengths, seed)
                    extra: dict[str, Any] = {}
                elif args.fixed_latents:
                    classes, learned, seconds, extra = _fixed_run(z_first[seq.indices], seq, variant, seed, args.rounds)
                elif variant == "gmm" and not args.gmm_per_order:
                    classes, learned, seconds, extra = (
                        base_classes[seq.indices],
                        None,
                        0.0,
                        {"run": "data's own order, reindexed"},
                    )
                else:
                    classes, learned, seconds, extra = _full_run(seq, variant, seed, args, out)
                rows.append(
                    _score(
                        kind,
                        seed,
                        variant,
                        classes,
                        learned,
                        seq,
                        seconds,
                        fixed_latents=bool(args.fixed_latents),
                        **extra,
                    )
                )


def table(rows: list[dict[str, Any]]) -> str:
    """Chain kind x seed x variant: accuracy, TV to the reference transitions, seconds; then means per kind, variant."""
    chains = [r for r in rows if r["part"] == "chains"]
    if not chains:
        return ""
    lines = ["| kind | seed | variant | accuracy | TV | s |", "|---|---|---|---|---|---|"]
    for r in chains:
        tv = "" if r["tv"] is None else f"{r['tv']:.3f}"
        lines.append(f"| {r['kind']} | {r['seed']} | {r['variant']} | {r['accuracy']:.3f} | {tv} | {r['seconds']} |")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in chains:
        groups.setdefault((r["kind"], r["variant"]), []).append(r)
    for (kind, variant), rs in groups.items():
        accs = [r["accuracy"] for r in rs]
        tvs = [r["tv"] for r in rs if r["tv"] is not None]
        tv = f"mean {statistics.mean(tvs):.3f} max {max(tvs):.3f}" if tvs else ""
        lines.append(
            f"| {kind} | all {len(rs)} | {variant} | mean {statistics.mean(accs):.3f} min {min(accs):.3f} | {tv} | |"
        )
    return "\n".join(lines)
